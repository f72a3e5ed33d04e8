"""The agent's span times (epoch ns, its wall clock) → host-monotonic instants, with the uncertainty shown.

Step 1, the host's own wall clock: the receiver stamps a (monotonic, wall) pair at start and at every request;
an epoch instant is placed by interpolating between the two pairs around it (NTP may slew the wall clock against
the monotonic one). An agent on this host (every request from a loopback address) reads the same wall clock, so
this is its clock; the uncertainty is the pairs' reading error plus any slew between them.

Step 2, causality against what vlh measured itself (`causal_bounds`): the agent cannot have sent its first audio
after it reached vlh (`audio_first_sent` ≤ `first_audio_arrival`, else ≤ the ear onset), and cannot have had a
transcript, an LLM request or TTS before the user stopped speaking (each ≥ `user_speech_end`), and its own estimate
of the end of speech is not earlier than the real end by more than a VAD frame (SPEECH_END_SLACK_S). Each turn bounds
the agent-minus-host clock offset from below and above. If 0 lies inside, step 1 stands; if not, the agent's clock
is off: vlh moves it to the middle of the bounds and shows half their width as the uncertainty (and says so).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


class HostWallClock:
    def __init__(self, pairs: list[tuple[float, int]]):
        if not pairs:
            raise ValueError("no (monotonic, wall) pair")
        self.pairs = sorted(pairs, key=lambda p: p[1])
        self.walls = [p[1] for p in self.pairs]

    def _around(self, wall_ns: int):
        i = bisect.bisect_left(self.walls, wall_ns)
        a = self.pairs[max(0, i - 1)]
        b = self.pairs[min(len(self.pairs) - 1, i)]
        return a, b

    def to_mono(self, wall_ns: int) -> float:
        """Integer ns arithmetic up to the last step: an epoch in float seconds has only ~0.2 µs resolution."""
        a, b = self._around(wall_ns)
        mono = a[0] + (wall_ns - a[1]) / 1e9
        if b[1] != a[1]:
            f = min(1.0, max(0.0, (wall_ns - a[1]) / (b[1] - a[1])))
            slew = (b[1] - a[1]) / 1e9 - (b[0] - a[0])  # wall advanced this much more than monotonic
            mono -= f * slew
        return mono

    def slew_s(self, wall_ns: int) -> float:
        """How much the wall clock moved against the monotonic one between the pairs around this instant."""
        a, b = self._around(wall_ns)
        return abs((b[1] - a[1]) / 1e9 - (b[0] - a[0]))


@dataclass
class Bounds:
    lower_s: float = -math.inf  # the agent's clock is at least this far ahead of the host's (seconds)
    upper_s: float = math.inf
    n_lower: int = 0
    n_upper: int = 0

    def contains(self, x: float, slack: float = 0.0) -> bool:
        return self.lower_s - slack <= x <= self.upper_s + slack

    def as_dict(self) -> dict:
        f = lambda v: None if not math.isfinite(v) else round(v * 1e3, 3)  # noqa: E731
        return {"lower_ms": f(self.lower_s), "upper_ms": f(self.upper_s), "n_lower": self.n_lower,
                "n_upper": self.n_upper}


# The agent's own estimate of the end of speech (pipecat: VAD stop − stop_secs; LiveKit: last_speaking_time) comes
# after the real end plus the uplink, give or take its VAD's frame (pipecat's Silero: 32 ms): it bounds too, loosely.
SPEECH_END_SLACK_S = 0.050
SPEECH_END_ESTIMATES = ("user_vad_end", "user_speech_end_detected")  # pipecat's, LiveKit's adapter
AFTER_USER_END = ("stt_final", "llm_request", "llm_first_token", "llm_first_visible_token", "tts_request",
                  "tts_first_audio", "audio_first_sent")


def causal_bounds(rows: list[dict], events: list[dict]) -> Bounds:
    """Bounds on the extra agent-minus-host offset x (instants placed at t − x) from the turns vlh measured.
    `events`: measure_call's event rows (call, turn, name, t_mono, origin); only the agent's OTLP instants count."""
    by_turn: dict[int, list[dict]] = {}
    for e in events:
        if str(e.get("origin", "")).startswith("otlp:"):
            by_turn.setdefault(e["turn"], []).append(e)
    b = Bounds()
    for r in rows:
        evs = by_turn.get(r.get("turn"), [])
        u_end = r.get("user_speech_end_mono")
        reach = r.get("first_audio_arrival_mono") or r.get("agent_audio_start_mono")
        for e in evs:
            if e["name"] == "audio_first_sent" and reach is not None and r.get("status") == "ok":
                b.lower_s = max(b.lower_s, e["t_mono"] - reach)
                b.n_lower += 1
            if e["name"] in AFTER_USER_END and u_end is not None:
                b.upper_s = min(b.upper_s, e["t_mono"] - u_end)
                b.n_upper += 1
            if e["name"] in SPEECH_END_ESTIMATES and u_end is not None:
                b.upper_s = min(b.upper_s, e["t_mono"] - u_end + SPEECH_END_SLACK_S)
                b.n_upper += 1
    return b
