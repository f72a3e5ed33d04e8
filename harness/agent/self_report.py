"""What the agent tells about itself on the data channel, in two dialects at once (design.md §3).

- vlh: `{"type": "vlh.event", "name", "t", "turn"}` with `t` on the agent's *telemetry clock*, and
  `vlh.ping` → `vlh.pong {"id", "t0", "t1", "t2"}` (t1 at receipt, t2 at send, both on that clock).
- RTVI (pipecat, label "rtvi-ai"): user-/bot- started/stopped speaking, bot-llm-started/-stopped,
  bot-tts-started/-stopped, bot-llm-text, bot-tts-text, user-transcription, bot-interrupted,
  `metrics {"ttfb": [{"processor", "value"}]}` in seconds, and `client-ready` → `bot-ready`.

Telemetry clock = host monotonic + offset + drift·(t − t_ref): it lets tests check that vlh reconciles clocks.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

log = logging.getLogger(__name__)

RTVI_LABEL = "rtvi-ai"
RTVI_PROTOCOL_VERSION = "1.0.0"
STT_PROCESSOR = "SimulatedSTTService#0"
LLM_PROCESSOR = "SimulatedLLMService#0"
TTS_PROCESSOR = "EspeakTTSService#0"
LLM_MODEL = "vlh-simulated"


class TelemetryClock:
    """The agent's reported clock: `host_mono + offset_ms/1000 + drift_ppm·1e-6·(host_mono − t_ref)`."""

    def __init__(self, offset_ms: float = 0.0, drift_ppm: float = 0.0, t_ref: float | None = None):
        self.offset_s = offset_ms / 1000.0
        self.drift = drift_ppm * 1e-6
        self.t_ref = time.monotonic() if t_ref is None else t_ref

    def at(self, t_mono: float) -> float:
        """Telemetry-clock reading at host instant `t_mono`."""
        return t_mono + self.offset_s + self.drift * (t_mono - self.t_ref)

    def now(self) -> float:
        return self.at(time.monotonic())

    def to_host(self, t_tel: float) -> float:
        """Inverse of `at` (exact for a linear clock)."""
        return (t_tel - self.offset_s + self.drift * self.t_ref) / (1.0 + self.drift)

    def describe(self) -> dict:
        return {"offset_ms": self.offset_s * 1000.0, "drift_ppm": self.drift * 1e6, "t_ref": self.t_ref}


class CallTelemetry:
    """One call's telemetry sender/receiver. `send` is a callable taking a str (the data channel's send);
    it is attached once the client's channel opens (`attach`). Messages before that are dropped and counted."""

    def __init__(self, clock: TelemetryClock, dialects: list[str], on_client_message=None):
        self.clock = clock
        self.vlh = "vlh" in dialects
        self.rtvi = "rtvi" in dialects
        self._send = None
        self.sent = 0
        self.dropped = 0
        self.received = 0
        self.unparsed = 0
        self.keepalives = 0
        self.on_client_message = on_client_message

    def attach(self, send) -> None:
        self._send = send

    def detach(self) -> None:
        self._send = None

    def _emit(self, msg: dict) -> None:
        if self._send is None:
            self.dropped += 1
            return
        try:
            self._send(json.dumps(msg))
            self.sent += 1
        except Exception as exc:  # channel closing: the call ends elsewhere
            self.dropped += 1
            log.debug("telemetry send failed: %s", exc)

    # -- vlh dialect
    def event(self, name: str, t_mono: float, turn: int) -> None:
        if self.vlh:
            self._emit({"type": "vlh.event", "name": name, "t": self.clock.at(t_mono), "turn": turn})

    # -- RTVI dialect
    def rtvi_msg(self, type_: str, data: dict | None = None, id_: str | None = None) -> None:
        if not self.rtvi:
            return
        msg: dict = {"label": RTVI_LABEL, "type": type_}
        if id_ is not None:
            msg["id"] = id_
        if data is not None:
            msg["data"] = data
        self._emit(msg)

    def rtvi_ttfb(self, processor: str, seconds: float, model: str | None = None) -> None:
        entry = {"processor": processor, "value": seconds}
        if model:
            entry["model"] = model
        self.rtvi_msg("metrics", {"ttfb": [entry]})

    def rtvi_transcription(self, text: str) -> None:
        self.rtvi_msg("user-transcription", {
            "text": text, "user_id": "", "final": True,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        })

    # -- incoming
    def handle(self, raw, t_receipt: float) -> None:
        """A client message arrived at host instant `t_receipt` (stamped by the caller on arrival)."""
        self.received += 1
        if isinstance(raw, str) and raw.startswith("ping"):
            self.keepalives += 1  # SmallWebRTC clients' "ping: <ms>" keep-alive
            return
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
        except (ValueError, TypeError):
            self.unparsed += 1
            log.info("telemetry: ignoring a non-JSON data-channel message")
            return
        kind = msg.get("type")
        if kind == "vlh.ping" and self.vlh:
            t1 = self.clock.at(t_receipt)
            pong = {"type": "vlh.pong", "id": msg.get("id"), "t0": msg.get("t0"), "t1": t1}
            if self._send is not None:
                pong["t2"] = self.clock.now()
                self._emit(pong)
            return
        if msg.get("label") == RTVI_LABEL and self.rtvi:
            if kind == "client-ready":
                self.rtvi_msg("bot-ready", {
                    "version": RTVI_PROTOCOL_VERSION,
                    "about": {"library": "vlh-agent", "library_version": _version()},
                }, id_=str(msg.get("id", "")))
            elif kind in ("client-message", "send-text", "disconnect-bot", "append-to-context"):
                pass  # accepted, nothing to do for a scripted agent
            else:
                self.rtvi_msg("error-response", {"error": f"Unsupported type {kind}"},
                              id_=str(msg.get("id", "")))
        if self.on_client_message is not None:
            self.on_client_message(msg)

    def counts(self) -> dict:
        return {"sent": self.sent, "dropped": self.dropped, "received": self.received, "unparsed": self.unparsed,
                "keepalives": self.keepalives}


def _version() -> str:
    try:
        from harness import __version__
        return __version__
    except Exception:  # pragma: no cover
        return "0"
