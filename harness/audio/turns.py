"""Turns on a two-channel recording: a user utterance (mic) and the agent audio (ear) that answers it.

A turn starts with each user utterance. Its reply is the agent speech that starts after the utterance ends and
before the next utterance starts: `agent_start` is the first such region's start, `agent_end` the last one's end.
No such speech → status `no_response`. Agent speech that starts while the user is still speaking (overlap,
barge-in, a reply still running from the previous turn) does not count as this turn's reply.

An utterance may hold pauses longer than the detector's `min_pause_ms` (a comma pause, a long stop closure), so
one utterance can be several user regions. User regions with no agent speech starting between them and a pause
under `max_utterance_pause_s` (0.5 s) are one utterance: the agent has not answered, and the pause is within
what speech holds inside an utterance (comma pauses of 300–450 ms in the corpus of bench/voice_corpus.py), while
a user (or vlh's scripted user, 0.6 s at least) who gets no answer waits longer before speaking again — that is a
`no_response` turn. Pauses in between are ambiguous; the limit is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.audio import SAMPLE_RATE
from harness.audio.boundaries import Region, speech_regions


@dataclass(frozen=True)
class Turn:
    index: int  # from 1
    user_start: int
    user_end: int
    agent_start: int | None
    agent_end: int | None
    sample_rate: int = SAMPLE_RATE

    @property
    def status(self) -> str:
        return "ok" if self.agent_start is not None else "no_response"

    @property
    def gap_ms(self) -> float | None:
        if self.agent_start is None:
            return None
        return (self.agent_start - self.user_end) * 1000.0 / self.sample_rate

    def seconds(self, index: int | None) -> float | None:
        return None if index is None else index / self.sample_rate

    def to_dict(self) -> dict:
        """The `vlh analyze --json` row: times in seconds from the start of the recording."""
        r4 = lambda v: None if v is None else round(v, 4)  # noqa: E731
        gap = self.gap_ms
        return {
            "user_speech_end_s": r4(self.seconds(self.user_end)),
            "agent_audio_start_s": r4(self.seconds(self.agent_start)),
            "gap_ms": None if gap is None else round(gap, 1),
            "status": self.status,
            "turn": self.index,
            "user_speech_start_s": r4(self.seconds(self.user_start)),
            "agent_audio_end_s": r4(self.seconds(self.agent_end)),
        }


MAX_UTTERANCE_PAUSE_S = 0.5


def utterances(user: list[Region], agent: list[Region], sr: int,
               max_utterance_pause_s: float = MAX_UTTERANCE_PAUSE_S) -> list[Region]:
    """User regions joined into utterances: consecutive regions less than `max_utterance_pause_s` apart with no
    agent region starting between them are one utterance (see module doc)."""
    a_start = np.array(sorted(r.start for r in agent), dtype=np.int64)
    out: list[Region] = []
    for u in user:
        if out:
            prev = out[-1]
            answered = np.searchsorted(a_start, u.start, "left") > np.searchsorted(a_start, prev.end, "left")
            if not answered and (u.start - prev.end) < max_utterance_pause_s * sr:
                out[-1] = Region(prev.start, u.end, prev.sample_rate)
                continue
        out.append(u)
    return out


def pair_turns(user: list[Region], agent: list[Region], sr: int, n_samples: int | None = None, *,
               max_utterance_pause_s: float = MAX_UTTERANCE_PAUSE_S) -> list[Turn]:
    """Pair user utterances (user regions joined by `utterances`) with the agent regions that answer them (see
    module doc)."""
    user = utterances(user, agent, sr, max_utterance_pause_s)
    a_start = np.array([r.start for r in agent], dtype=np.int64)
    turns = []
    for i, u in enumerate(user):
        limit = user[i + 1].start if i + 1 < len(user) else (n_samples if n_samples is not None else 2**62)
        lo = int(np.searchsorted(a_start, u.end, side="left"))
        hi = int(np.searchsorted(a_start, limit, side="left"))
        if hi > lo:
            turns.append(Turn(i + 1, u.start, u.end, agent[lo].start, agent[hi - 1].end, sr))
        else:
            turns.append(Turn(i + 1, u.start, u.end, None, None, sr))
    return turns


def find_turns(mic: np.ndarray, ear: np.ndarray, sr: int, *, ear_opts: dict | None = None, **opts) -> list[Turn]:
    """Turns of a recording: speech regions on both channels (options of `speech_regions`), then paired.

    `opts` apply to both channels; `ear_opts` override them for the ear.
    """
    user = speech_regions(np.asarray(mic, np.float32), sr, **opts)
    agent = speech_regions(np.asarray(ear, np.float32), sr, **{**opts, **(ear_opts or {})})
    return pair_turns(user, agent, sr, max(len(mic), len(ear)))
