"""The media-stream message formats vlh speaks as the phone provider (provider → bot, and what it accepts back).

Twilio Media Streams is the reference (`connected`, `start`, `media`, `mark`, `stop`; the bot sends `media`, `mark`,
`clear`). Telnyx, Plivo and Exotel are close variants; the field names follow pipecat's serializers
(`pipecat.serializers.{twilio,telnyx,plivo,exotel}`). Audio is 8 kHz: μ-law for all but Exotel, whose
stream is 16-bit little-endian linear PCM ("raw/slin").

`parse(text)` turns a message from the bot into a `BotMessage`; it never raises on well-formed JSON with an unknown
event (kind "other"), and raises `ValueError` with one line for anything that is not a JSON object.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

SAMPLE_RATE = 8000
CHUNK_SAMPLES = 160  # 20 ms


@dataclass
class BotMessage:
    kind: str  # media | mark | clear | other
    stream: str | None = None
    payload: bytes = b""
    name: str = ""
    event: str = ""
    raw: dict = field(default_factory=dict)


class Provider:
    name = "twilio"
    encoding = "mulaw"  # or "l16"
    stream_key = "streamSid"
    mark_event = "mark"
    clear_event = "clear"

    def connected(self) -> dict | None:
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    def start(self, stream: str, call: str, params: dict, seq: int) -> dict:
        return {"event": "start", "sequenceNumber": str(seq), "streamSid": stream,
                "start": {"accountSid": "ACvlh", "streamSid": stream, "callSid": call, "tracks": ["inbound"],
                          "customParameters": dict(params),
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1}}}

    def media(self, stream: str, seq: int, chunk: int, ts_ms: int, audio: bytes) -> dict:
        return {"event": "media", "sequenceNumber": str(seq), "streamSid": stream,
                "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(ts_ms),
                          "payload": base64.b64encode(audio).decode()}}

    def mark_played(self, stream: str, seq: int, name: str) -> dict:
        return {"event": "mark", "sequenceNumber": str(seq), "streamSid": stream, "mark": {"name": name}}

    def stop(self, stream: str, call: str, seq: int) -> dict:
        return {"event": "stop", "sequenceNumber": str(seq), "streamSid": stream,
                "stop": {"accountSid": "ACvlh", "callSid": call}}

    def parse(self, text) -> BotMessage:
        msg = _json(text)
        ev = msg.get("event")
        stream = msg.get(self.stream_key)
        if ev == "media":
            return BotMessage("media", stream, _payload(msg.get("media")), event=ev, raw=msg)
        if ev == self.mark_event:
            return BotMessage("mark", stream, name=str((msg.get("mark") or {}).get("name", "")), event=ev, raw=msg)
        if ev == self.clear_event:
            return BotMessage("clear", stream, event=ev, raw=msg)
        return BotMessage("other", stream, event=str(ev), raw=msg)


class Telnyx(Provider):
    name = "telnyx"
    stream_key = "stream_id"

    def connected(self) -> dict | None:
        return {"event": "connected", "version": "1.0.0"}

    def start(self, stream: str, call: str, params: dict, seq: int) -> dict:
        return {"event": "start", "sequence_number": str(seq), "stream_id": stream,
                "start": {"call_control_id": call, "client_state": None, "custom_parameters": dict(params),
                          "media_format": {"encoding": "PCMU", "sample_rate": SAMPLE_RATE, "channels": 1}}}

    def media(self, stream: str, seq: int, chunk: int, ts_ms: int, audio: bytes) -> dict:
        return {"event": "media", "sequence_number": str(seq), "stream_id": stream,
                "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(ts_ms),
                          "payload": base64.b64encode(audio).decode()}}

    def mark_played(self, stream: str, seq: int, name: str) -> dict:
        return {"event": "mark", "sequence_number": str(seq), "stream_id": stream, "mark": {"name": name}}

    def stop(self, stream: str, call: str, seq: int) -> dict:
        return {"event": "stop", "sequence_number": str(seq), "stream_id": stream, "stop": {"call_control_id": call}}


class Plivo(Provider):
    name = "plivo"
    stream_key = "streamId"
    mark_event = "checkpoint"  # Plivo's mark: the bot sends `checkpoint`, the provider answers `playedStream`
    clear_event = "clearAudio"

    def connected(self) -> dict | None:
        return None

    def start(self, stream: str, call: str, params: dict, seq: int) -> dict:
        return {"event": "start", "sequenceNumber": seq, "start": {
            "callId": call, "streamId": stream, "accountId": "vlh", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE}}, "extra_headers": dict(params)}

    def media(self, stream: str, seq: int, chunk: int, ts_ms: int, audio: bytes) -> dict:
        return {"event": "media", "sequenceNumber": seq, "streamId": stream,
                "media": {"track": "inbound", "timestamp": str(ts_ms), "chunk": chunk,
                          "payload": base64.b64encode(audio).decode()}}

    def mark_played(self, stream: str, seq: int, name: str) -> dict:
        return {"event": "playedStream", "sequenceNumber": seq, "streamId": stream, "name": name}

    def stop(self, stream: str, call: str, seq: int) -> dict:
        return {"event": "stop", "sequenceNumber": seq, "streamId": stream}

    def parse(self, text) -> BotMessage:
        msg = _json(text)
        ev = msg.get("event")
        stream = msg.get(self.stream_key)
        if ev == "playAudio":
            return BotMessage("media", stream, _payload(msg.get("media")), event=ev, raw=msg)
        if ev == "checkpoint":
            return BotMessage("mark", stream, name=str(msg.get("name", "")), event=ev, raw=msg)
        if ev == "clearAudio":
            return BotMessage("clear", stream, event=ev, raw=msg)
        return BotMessage("other", stream, event=str(ev), raw=msg)


class Exotel(Provider):
    name = "exotel"
    encoding = "l16"
    stream_key = "stream_sid"

    def connected(self) -> dict | None:
        return {"event": "connected"}

    def start(self, stream: str, call: str, params: dict, seq: int) -> dict:
        return {"event": "start", "sequence_number": seq, "stream_sid": stream,
                "start": {"stream_sid": stream, "call_sid": call, "account_sid": "vlh", "custom_parameters": dict(params),
                          "media_format": {"encoding": "raw/slin", "sample_rate": SAMPLE_RATE, "bit_rate": "128kbps"}}}

    def media(self, stream: str, seq: int, chunk: int, ts_ms: int, audio: bytes) -> dict:
        return {"event": "media", "sequence_number": seq, "stream_sid": stream,
                "media": {"chunk": chunk, "timestamp": str(ts_ms), "payload": base64.b64encode(audio).decode()}}

    def mark_played(self, stream: str, seq: int, name: str) -> dict:
        return {"event": "mark", "sequence_number": seq, "stream_sid": stream, "mark": {"name": name}}

    def stop(self, stream: str, call: str, seq: int) -> dict:
        return {"event": "stop", "sequence_number": seq, "stream_sid": stream, "stop": {"call_sid": call}}


PROVIDERS = {p.name: p for p in (Provider, Telnyx, Plivo, Exotel)}


def provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]()
    except KeyError:
        raise ValueError(f"--provider {name!r}: vlh speaks {', '.join(PROVIDERS)}") from None


def _json(text) -> dict:
    if isinstance(text, (bytes, bytearray)):
        raise ValueError(f"a binary WebSocket message ({len(text)} bytes) where the provider protocol has JSON text")
    try:
        msg = json.loads(text)
    except ValueError:
        raise ValueError(f"a message that is not JSON: {text[:60]!r}") from None
    if not isinstance(msg, dict):
        raise ValueError(f"a JSON message that is not an object: {text[:60]!r}")
    return msg


def _payload(media) -> bytes:
    if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
        raise ValueError("a media message without media.payload")
    try:
        return base64.b64decode(media["payload"], validate=True)
    except ValueError:
        raise ValueError("a media message whose payload is not base64") from None
