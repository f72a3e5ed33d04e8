"""The reference agent on a phone provider's media-stream WebSocket (`vlh agent --ws-telephony`): the same pipeline
as a WebRTC call (harness/agent/call.py `Pipeline`), its audio the 8 kHz media messages of Twilio Media Streams
(or the Telnyx / Plivo / Exotel variant the caller's `start` message implies).

- Serves `ws://HOST:PORT/<any path>` (aiohttp). Each connection is one call, from `start` to `stop`/close.
- In: each `media` payload (μ-law, or L16 for Exotel) is decoded, upsampled to 48 kHz and fed to the endpointer with
  its arrival instant.
- Out: every 20 ms (host clock, from the call's `start`) the reply queue fills a 48 kHz buffer; if it holds reply
  audio it is downsampled to 8 kHz, encoded and sent as one `media` message; a `mark` named `turn-<n>` follows each
  reply's last chunk, and a barge-in sends `clear`. The truth log holds the send instant of every media message
  (`kind: "media_sent"`, when the packet log is wanted) and, per turn, `audio_first_wire` = the instant the message
  holding the first voiced sample was handed to the socket + that sample's offset in it: where it plays at a caller
  whose playout queue is empty (the agent sends in real time, so it is).
- Impairments on the socket (TCP: no loss, head-of-line blocking): `net_delay_ms` holds every message back,
  `net_jitter_ms` adds a uniform extra delay per message (order kept: a late message delays the ones behind it),
  `net_stall_ms` every `net_stall_every_ms` stalls the stream (what a lost segment's retransmission does to TCP):
  every message due inside the stall leaves when it ends, at once and in order — `clear` and `mark` too.
  `net_loss` does not apply (TCP retransmits).
- Telemetry: `vlh.event` cannot travel on the provider's socket, so it goes to a side channel, the telemetry file
  (`--telemetry-file FILE`, the format of harness/agent/device.py: JSON lines on the host clock), which the
  measuring side reads after the call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time

import numpy as np
from scipy.signal import resample_poly

from harness.agent.call import Pipeline, Turn
from harness.agent.config import AgentConfig
from harness.agent.endpoint import PacketRef
from harness.agent.outgoing import FrameInfo, SegmentQueue
from harness.audio import mulaw

log = logging.getLogger(__name__)

FRAME = 960  # 20 ms at 48 kHz
PHONE_FRAME = 160
MAX_MESSAGE = 256 * 1024

# provider → (stream id key, how to read the stream id from `start`, outgoing media event, clear event, mark event)
FORMATS = {
    "twilio": ("streamSid", "media", "clear", "mark"),
    "telnyx": ("stream_id", "media", "clear", "mark"),
    "plivo": ("streamId", "playAudio", "clearAudio", "checkpoint"),
    "exotel": ("stream_sid", "media", "clear", "mark"),
}


def detect(start: dict) -> tuple[str, str, str]:
    """(provider, stream id, encoding) from a `start` message."""
    s = start.get("start") or {}
    if "streamSid" in start or "streamSid" in s:
        return "twilio", start.get("streamSid") or s.get("streamSid"), "mulaw"
    if "stream_id" in start:
        return "telnyx", start["stream_id"], "mulaw"
    if "streamId" in s:
        return "plivo", s["streamId"], "mulaw"
    if "stream_sid" in start or "stream_sid" in s:
        enc = (s.get("media_format") or {}).get("encoding", "raw/slin")
        return "exotel", start.get("stream_sid") or s.get("stream_sid"), "l16" if "slin" in enc else "mulaw"
    raise ValueError("a start message without a stream id (streamSid / stream_id / streamId / stream_sid)")


class PhoneCall(Pipeline):
    """One media-stream call: lives from the `start` message to `stop` or the socket's close."""

    def __init__(self, *, cfg: AgentConfig, index: int, ws, start: dict, tts, truth, clock, telemetry=None):
        self.provider, self.stream, self.encoding = detect(start)
        super().__init__(cfg=cfg, index=index, pc_id=str(self.stream)[:64], tts=tts, truth=truth,
                         clock=clock, out=SegmentQueue())
        self.ws = ws
        self.key, self.media_event, self.clear_event, self.mark_event = FORMATS[self.provider]
        self.tel_file = telemetry
        if telemetry is not None:
            self.tel.attach(telemetry)
        self.t_start = time.monotonic()
        self.rx = 0
        self.tx = 0
        self._send_q: asyncio.Queue = asyncio.Queue()
        self._pkt: dict = {}
        self._tasks: list[asyncio.Task] = []
        self._last_wire = 0.0
        self._rng = random.Random(cfg.seed * 1000 + index)

    def begin(self) -> None:
        self._prepare_replies()
        self.truth.record({"kind": "call", "event": "start", "call": self.pc_id, "call_index": self.index,
                           "t": self.t_start, "transport": "ws-telephony", "provider": self.provider,
                           "stream": self.stream, "telemetry_clock": self.clock.describe(),
                           "config": self.cfg.model_dump()})
        self._tasks = [asyncio.ensure_future(self._out_loop()), asyncio.ensure_future(self._sender())]

    # ---- in
    def on_media(self, payload: bytes, arrival: float) -> None:
        if self.closed:
            return
        pcm8 = mulaw.decode(payload) if self.encoding == "mulaw" else np.frombuffer(payload, "<i2")
        if not len(pcm8):
            return
        self.rx += 1
        self.last_rx = arrival
        seq = self.rx
        up = resample_poly(pcm8.astype(np.float32), 6, 1)
        pcm48 = np.clip(np.round(up), -32768, 32767).astype(np.int16)
        # the chunk's last sample "arrived" with the message: sample i of it is (n−1−i)/48000 s older
        n = len(pcm48)
        self._heard(pcm48, PacketRef(arrival, seq, seq * PHONE_FRAME),
                    lambda i: (arrival - (n - 1 - i) / 48000, seq, seq * PHONE_FRAME, i))

    # ---- out
    async def _out_loop(self) -> None:
        n = 0
        while not self.closed:
            target = self.t_start + n * 0.02
            d = target - time.monotonic()
            if d > 0:
                await asyncio.sleep(d)
            pcm = np.zeros(FRAME, np.int16)
            info = FrameInfo(index=n, sched=target, produced=time.monotonic())
            self.out.fill(pcm, info)
            if info.parts or self.stopping:
                self._send_q.put_nowait((info, pcm if info.parts else None))
            n += 1

    def stall_release(self, t: float) -> float:
        """When a message due at `t` leaves: the end of the stall it falls in (stalls of `net_stall_ms` start every
        `net_stall_every_ms` from the call's start, the first one period in), else `t`."""
        length, every = self.cfg.net_stall_ms / 1e3, self.cfg.net_stall_every_ms / 1e3
        if not (length and every):
            return t
        k = (t - self.t_start) // every
        start = self.t_start + k * every
        return start + length if k >= 1 and start <= t < start + length else t

    async def _wait_stall(self) -> None:
        d = self.stall_release(time.monotonic()) - time.monotonic()
        if d > 0:
            await asyncio.sleep(d)

    def _impair_delay(self) -> float:
        cfg = self.cfg
        d = cfg.net_delay_ms / 1000.0
        if cfg.net_jitter_ms:
            d += self._rng.uniform(0, cfg.net_jitter_ms / 1000.0)
        return d

    async def _sender(self) -> None:
        try:
            while True:
                await self._send_one(*await self._send_q.get())
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here would silently mute the agent: say so
            log.exception("call %s: the media sender failed", self.pc_id)

    async def _send_one(self, info: FrameInfo, pcm) -> None:
        """Hand one 20 ms buffer to the socket after the injected delay. The buffer's `sent` instant (the truth's
        `audio_first_sent`) is when it was produced, before the delay, as for WebRTC (the delay is the network's);
        `audio_first_wire_start` / `audio_first_wire` are when the send of the message to the socket began and
        returned (the message left in between)."""
        delay = self._impair_delay()
        t_due = self.stall_release(max(self._last_wire, info.produced + delay))
        d = t_due - time.monotonic()
        if d > 0:
            await asyncio.sleep(d)
        t_wire = t0 = time.monotonic()
        if pcm is not None:
            pcm8 = np.clip(np.round(resample_poly(pcm.astype(np.float32), 1, 6)), -32768, 32767).astype(np.int16)
            data = mulaw.encode(pcm8) if self.encoding == "mulaw" else pcm8.astype("<i2").tobytes()
            self.tx += 1
            msg = self._media(data)
            t0 = time.monotonic()
            try:
                await self.ws.send_str(msg)
            except Exception:  # the caller went away
                return
            t_wire = time.monotonic()
            self._last_wire = t_wire
            if self.truth.wants_packets:
                self.truth.packet({"kind": "media_sent", "dir": "out", "call": self.pc_id, "seq": self.tx,
                                   "t_before": t0, "t": t_wire, "produced": info.produced, "bytes": len(data)})
        self._pkt = {"seq": self.tx, "wire": t_wire, "wire_start": t0, "delay_ms": (t_wire - info.produced) * 1e3}
        ends = [p.turn for p in info.parts if p.reply_end]
        self._handed_over(info, info.produced)
        for turn_no in ends:
            await self._send_json(self._mark_msg(f"turn-{turn_no}"))

    def _mark_msg(self, name: str) -> dict:
        if self.provider == "plivo":
            return {"event": self.mark_event, self.key: self.stream, "name": name}
        return {"event": self.mark_event, self.key: self.stream, "mark": {"name": name}}

    def _media(self, data: bytes) -> str:
        payload = base64.b64encode(data).decode()
        if self.provider == "plivo":
            return json.dumps({"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000,
                                                               "payload": payload}})
        return json.dumps({"event": "media", self.key: self.stream, "media": {"payload": payload}})

    async def _send_json(self, obj: dict) -> None:
        await self._wait_stall()  # nothing overtakes a stalled TCP stream
        try:
            await self.ws.send_str(json.dumps(obj))
        except Exception:
            pass

    def _interrupt(self, turn: Turn, by: Turn, t: float) -> None:
        super()._interrupt(turn, by, t)
        asyncio.ensure_future(self._send_json({"event": self.clear_event, self.key: self.stream}))
        turn.barge_in["clear_sent"] = time.monotonic()

    def _mark(self, turn: Turn, what: str, part) -> None:
        p = self._pkt
        if what == "first":
            turn.reply.update(first_seq=p.get("seq"), first_wire=p.get("wire"), first_wire_start=p.get("wire_start"),
                              first_delay_ms=p.get("delay_ms"))
        elif what == "start":
            turn.reply["start_seq"] = p.get("seq")
        else:
            turn.reply["last_seq"] = p.get("seq")

    def _stopped(self, turn: Turn) -> None:
        turn.barge_in["audio_stopped_seq"] = self._pkt.get("seq")

    def _transport_record(self, turn: Turn, rec: dict) -> None:
        r = turn.reply
        rec.update({"transport": "ws-telephony", "provider": self.provider,
                    "audio_first_wire": r.get("first_wire"), "audio_first_wire_start": r.get("first_wire_start"),
                    "audio_first_sent_seq": r.get("first_seq"),
                    "audio_first_injected_delay_ms": r.get("first_delay_ms"),
                    "audio_first_dropped": False, "reply_start_seq": r.get("start_seq"),
                    "reply_end_seq": r.get("last_seq"),
                    "user_speech_end_heard": rec.get("last_audible_mic_arrival")})

    async def _release_transport(self) -> dict:
        for t in self._tasks:
            t.cancel()
        return {"media_in": self.rx, "media_out": self.tx}


async def serve_phone(cfg: AgentConfig, *, host: str, port: int, truth_log=None, packet_log=None,
                      telemetry_file=None, on_ready=None, stop: asyncio.Event | None = None,
                      tts_cache_dir=None) -> int:
    """Serve media-stream calls on ws://host:port/<any path> until `stop` is set."""
    from aiohttp import WSMsgType, web

    from harness.agent.device import TelemetryFile
    from harness.agent.llm import sentences
    from harness.agent.self_report import TelemetryClock
    from harness.agent.truth import TruthLog
    from harness.agent.tts import Tts

    truth = TruthLog(truth_log, packet_log, memory=False)
    clock = TelemetryClock(cfg.clock_offset_ms, cfg.clock_drift_ppm)
    tts = Tts(cfg.tts_voice, cfg.tts_rate, cache_dir=tts_cache_dir)
    await asyncio.gather(*(tts.prepare(s) for text in cfg.responses for s in sentences(text)))
    calls = {"n": 0}

    async def handle(request):
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        call = None
        try:
            async for msg in ws:
                arrival = time.monotonic()
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    m = json.loads(msg.data)
                except ValueError:
                    continue
                ev = m.get("event")
                if ev == "start" and call is None:
                    calls["n"] += 1
                    tel = None
                    try:
                        if telemetry_file:  # each line tagged with the stream id the provider (vlh) chose
                            tel = TelemetryFile(telemetry_file, clock, call=str(detect(m)[1])[:64])
                        call = PhoneCall(cfg=cfg, index=calls["n"], ws=ws, start=m, tts=tts, truth=truth,
                                         clock=clock, telemetry=tel)
                    except ValueError as exc:
                        log.warning("media stream: %s", exc)
                        break
                    call.begin()
                elif ev == "media" and call is not None:
                    try:
                        payload = base64.b64decode(m["media"]["payload"])
                    except (KeyError, TypeError, ValueError):
                        continue
                    call.on_media(payload, arrival)
                elif ev in ("mark", "playedStream") and call is not None:
                    name = m.get("name") or (m.get("mark") or {}).get("name")
                    truth.record({"kind": "mark_echo", "call": call.pc_id, "name": name, "t": arrival})
                elif ev == "stop":
                    break
        finally:
            if call is not None:
                await call.close("stop" if not ws.closed else "socket closed")
                if call.tel_file is not None:
                    call.tel_file.close()
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    try:
        if on_ready:
            on_ready(bound)
        print(f"ws://{host}:{bound}/ws", flush=True)
        stop = stop or asyncio.Event()
        await stop.wait()
    finally:
        await runner.cleanup()
        tts.close()
        truth.close()
    return 0
