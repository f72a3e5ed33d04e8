"""One phone call as the provider places it: vlh opens the bot's media-stream WebSocket, says `connected`/`start`,
streams the utterances as 20 ms 8 kHz chunks paced by the host clock, and emulates what the caller hears.

- Mic: chunk n is due at `t_start + n·20 ms` (host clock); its 48 kHz original is written to ch0 where it really
  left (that place + its lateness, the instant it was handed to the socket) and the lateness kept, as the WebRTC mic
  does, so measure_call sees the same mic contract and one time base.
- Ear: every message is stamped on arrival: over `ws://` by the kernel (the arrival of the segment holding its last
  byte, `harness.devices.tcpstamp`), so a busy event loop does not make it late; over `wss://` (TLS records, not
  frames) and for a segment the kernel did not stamp, when aiohttp hands it over (the loop's `time.monotonic()`);
  `arrival_stamps` in the capture's meta counts both. The **playout queue** plays audio in real time from its arrival: a chunk
  starts at max(arrival, end of the audio queued before it). A `mark` is echoed when the audio queued before it has
  played (Twilio's contract; at once if nothing is queued); `clear` drops what has not played yet (and echoes the
  pending marks). A chunk that arrives 2 ms to 1 s after the queue ran dry counts as an underrun.
- ch1 is the played audio, each run of back-to-back chunks upsampled 8 → 48 kHz as one piece (polyphase, zero
  phase: an onset stays on its instant). μ-law has no algorithmic delay, so the codec stage is 0 ms.
- Bad input ends the call with a named reason (`disconnect_reason`): an HTTP answer instead of the upgrade, a close,
  a non-JSON message, media for a stream vlh did not open, a message over the size limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np

from harness.audio import mulaw
from harness.audio.capture import EAR, MIC, SAMPLE_RATE, Timeline
from harness.audio.resample import resample
from harness.devices import tcpstamp
from harness.errors import VlhError
from harness.results.redact import redact_url
from harness.transports.telephony.providers import CHUNK_SAMPLES, SAMPLE_RATE as PHONE_RATE, provider
from harness.transports.tasks import cancel_and_wait

log = logging.getLogger(__name__)

FRAME = 960  # 20 ms at 48 kHz
FRAME_S = FRAME / SAMPLE_RATE
MAX_MESSAGE = 256 * 1024  # one provider message; a bot's 20 ms chunk is ~300 bytes of JSON
UNDERRUN_WINDOW_S = 1.0
UNDERRUN_MIN_S = 0.002  # a shorter gap is the sender's scheduling jitter (it only shifts the rest of the reply)


@dataclass
class Played:
    arrival: float
    start: float  # play instant of its first sample
    pcm: np.ndarray  # int16, 8 kHz
    cut: int | None = None  # samples played before a `clear`

    @property
    def end(self) -> float:
        n = len(self.pcm) if self.cut is None else self.cut
        return self.start + n / PHONE_RATE


class PlayoutQueue:
    """The provider's playout of the bot's audio, on the host clock (see the module docstring)."""

    def __init__(self):
        self.chunks: list[Played] = []
        self.queue_end: float | None = None
        self.underruns = 0
        self.clears = 0

    def push(self, pcm: np.ndarray, arrival: float) -> Played:
        start = arrival if self.queue_end is None or self.queue_end <= arrival else self.queue_end
        if self.queue_end is not None and UNDERRUN_MIN_S <= arrival - self.queue_end < UNDERRUN_WINDOW_S:
            self.underruns += 1
        p = Played(arrival, start, pcm)
        self.chunks.append(p)
        self.queue_end = p.end
        return p

    def drained_at(self, now: float) -> float:
        """When the audio queued so far has played (now, if nothing is queued)."""
        return max(now, self.queue_end or now)

    def clear(self, now: float) -> None:
        self.clears += 1
        keep = []
        for p in self.chunks:
            if p.start >= now:
                continue  # not played yet: flushed
            if p.end > now:
                p.cut = int((now - p.start) * PHONE_RATE)
            keep.append(p)
        self.chunks = keep
        self.queue_end = min(self.queue_end, now) if self.queue_end is not None else None

    def runs(self) -> list[tuple[float, np.ndarray]]:
        """Back-to-back chunks joined: [(start, int16 8 kHz)]."""
        out: list[tuple[float, list]] = []
        end = None
        for p in self.chunks:
            pcm = p.pcm if p.cut is None else p.pcm[: p.cut]
            if end is not None and abs(p.start - end) < 0.5 / PHONE_RATE:
                out[-1][1].append(pcm)
            else:
                out.append((p.start, [pcm]))
            end = p.start + len(pcm) / PHONE_RATE
        return [(t, np.concatenate(parts)) for t, parts in out]


class RateCheck:
    """Audio at twice the announced rate (16 kHz in an 8 kHz stream, a common bot misconfiguration): the bot paces
    its media in real time, so a steady stream whose payloads hold 2× the audio of the time between them is
    16 kHz samples read as 8 kHz. Judged on a steady run (≥ STEADY messages, no gap over GAP_S), never on a
    burst (a bot may send a whole reply at once: its span is far shorter than its audio)."""

    STEADY = 25
    GAP_S = 0.1

    def __init__(self):
        self.first: float | None = None
        self.last: float | None = None
        self.samples = 0  # in the steady run, all but the first message's
        self.n = 0
        self.ratio = 0.0

    def add(self, t: float, samples: int) -> None:
        if self.last is None or t - self.last > self.GAP_S:
            self.first, self.samples, self.n = t, 0, 0
        else:
            self.samples += samples
        self.last = t
        self.n += 1

    def doubled(self) -> bool:
        if self.n < self.STEADY or self.last - self.first < 0.3:
            return False
        self.ratio = self.samples / PHONE_RATE / (self.last - self.first)
        return 1.8 <= self.ratio <= 2.2

    def describe(self) -> str:
        return (f"{self.ratio:.2f}× real time of audio in a steady media stream: 16 kHz audio where the `start` "
                f"message announced {PHONE_RATE} Hz? (the bot's output sample rate must be {PHONE_RATE} Hz)")


class TelephonyCall:
    """A CallTransport (harness/transports/base.py) over a provider media-stream WebSocket."""

    def __init__(self, url: str, provider_name: str = "twilio", headers: dict | None = None,
                 stream_params: dict | None = None, connect_timeout: float = 10.0):
        self.url = url
        self.provider = provider(provider_name)
        self.headers = dict(headers or {})
        self.stream_params = dict(stream_params or {})
        self.connect_timeout = connect_timeout
        self.stream_id = "MZ" + uuid.uuid4().hex
        self.call_id = "CA" + uuid.uuid4().hex
        self.timeline = Timeline(t0_mono=time.monotonic())
        self.playout = PlayoutQueue()
        self.rate = RateCheck()
        self.telemetry = None  # filled by the transport from the agent's side channel
        self.disconnected = False
        self.disconnect_reason = ""
        self.mic = None
        self.t_start: float | None = None
        self.lateness: list[float] = []
        self.ear_levels: list[tuple[float, float]] = []
        self.marks_echoed: list[tuple[str, float]] = []
        # every media-stream message, raw: (direction, host instant, event, decoded 8 kHz samples or None)
        self.wire: list[tuple[str, float, str, np.ndarray | None]] = []
        self.messages = {"media": 0, "mark": 0, "clear": 0, "other": 0}
        self._segments: list[tuple[int, np.ndarray]] = []
        self._sched_end = 0
        self._seq = 0
        self._chunk = 0
        self._session = None
        self._ws = None
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._socks: list = []  # the StampedSocket the WebSocket reads from (ws:// only)
        self.arrival_stamps = {"kernel": 0, "loop": 0}
        self._last_arrival = 0.0

    # ---- set-up
    async def connect(self) -> None:
        import aiohttp

        # ws://: reads stop at frame ends and each frame carries its kernel arrival stamp (wss://: TLS, loop stamps)
        plain = self.url.split(":", 1)[0].lower() in ("ws", "http")
        connector = aiohttp.TCPConnector(socket_factory=tcpstamp.socket_factory(self._socks)) if plain else None
        self._session = aiohttp.ClientSession(connector=connector)
        try:
            self._ws = await self._session.ws_connect(self.url, headers=self.headers, max_msg_size=MAX_MESSAGE,
                                                      timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                                                      autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            # the agent is there but refuses the call: a per-turn failure (every turn of this call), not a set-up one
            await self._session.close()
            self._mark_disconnected(f"the agent at {redact_url(self.url)} answered HTTP {exc.status} instead of a "
                                    "WebSocket upgrade: check the URL's path and --header")
            return
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            await self._session.close()
            raise VlhError(f"cannot open the WebSocket {redact_url(self.url)}: {exc}") from None
        p = self.provider
        try:
            hello = p.connected()
            if hello is not None:
                await self._send(hello)
            await self._send(p.start(self.stream_id, self.call_id, self.stream_params, self._next_seq()))
        except Exception as exc:  # closed under us before the stream began
            self._mark_disconnected(f"the agent closed the WebSocket before the stream started ({exc})")
            return
        self.t_start = time.monotonic()
        self.timeline.t0_mono = self.t_start
        self._tasks = [asyncio.ensure_future(self._mic_loop()), asyncio.ensure_future(self._recv_loop())]

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _send(self, obj: dict) -> None:
        await self._ws.send_str(json.dumps(obj))

    # ---- mic
    def schedule(self, samples: np.ndarray, at: float | None = None) -> float:
        if self.t_start is None:
            raise RuntimeError("the call has not started")
        earliest = (len(self.lateness) + 1) * FRAME
        start = max(earliest, self._sched_end) if at is None else max(earliest, int(round((at - self.t_start) * SAMPLE_RATE)))
        x = np.asarray(samples, np.float32)
        # the whole utterance resampled at once (no per-chunk filter edges); its 8 kHz start is the nearest sample
        x8 = mulaw.float_to_pcm16(resample(x, SAMPLE_RATE, PHONE_RATE))
        self._segments.append((start, x, int(round(start * PHONE_RATE / SAMPLE_RATE)), x8))
        self._sched_end = max(self._sched_end, start + len(x))
        return self.t_start + start / SAMPLE_RATE

    async def _mic_loop(self) -> None:
        n = 0
        while not self.disconnected:
            target = self.t_start + n * FRAME_S
            wait = target - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            a, b = n * FRAME, (n + 1) * FRAME
            a8, b8 = n * CHUNK_SAMPLES, (n + 1) * CHUNK_SAMPLES
            buf = np.zeros(FRAME, np.float32)
            pcm = np.zeros(CHUNK_SAMPLES, np.int32)
            self._segments = [g for g in self._segments if g[0] + len(g[1]) > a or g[2] + len(g[3]) > a8]
            for s, x, s8, x8 in self._segments:
                lo, hi = max(a, s), min(b, s + len(x))
                if hi > lo:
                    buf[lo - a:hi - a] += x[lo - s:hi - s]
                lo, hi = max(a8, s8), min(b8, s8 + len(x8))
                if hi > lo:
                    pcm[lo - a8:hi - a8] += x8[lo - s8:hi - s8]
            # what leaves is the 8 kHz stream; the capture keeps the 48 kHz original at the same instant
            pcm8 = np.clip(pcm, -32768, 32767).astype(np.int16)
            data = mulaw.encode(pcm8) if self.provider.encoding == "mulaw" else pcm8.astype("<i2").tobytes()
            self._chunk += 1
            msg = self.provider.media(self.stream_id, self._next_seq(), self._chunk, n * 20, data)
            t_send = time.monotonic()
            try:
                await self._send(msg)
            except Exception as exc:  # the socket went away under us
                self._mark_disconnected(f"sending media failed: {exc}")
                return
            self.wire.append(("out", t_send, "media", pcm8))
            # the chunk left when it was handed to the socket: the capture holds it there (its nominal place + its
            # lateness), one time base with the turn's instants, as the WebRTC mic does
            late = t_send - target
            self.lateness.append(late)
            shift = int(round(late * SAMPLE_RATE))
            if buf.any():
                self.timeline.write_at(MIC, a + shift, buf)
            else:
                self.timeline.extend(MIC, b + shift)
            n += 1

    # ---- ear
    async def _recv_loop(self) -> None:
        import aiohttp

        ws = self._ws
        while True:
            msg = await ws.receive()
            now = self._arrival(msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING))
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                self._mark_disconnected(f"the agent closed the WebSocket (code {ws.close_code})")
                return
            if msg.type == aiohttp.WSMsgType.ERROR:
                exc = msg.data if isinstance(msg.data, BaseException) else ws.exception()
                if isinstance(exc, aiohttp.WebSocketError) and exc.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                    self._mark_disconnected(f"the agent sent a message over {MAX_MESSAGE // 1024} KiB (vlh's limit "
                                            "for one media-stream message)")
                else:
                    self._mark_disconnected(f"WebSocket error: {exc}")
                return
            try:
                self._on_message(msg.data, now)
            except ValueError as exc:
                self._mark_disconnected(f"the agent sent {exc}")
                await ws.close()
                return

    def _arrival(self, close: bool) -> float:
        """The message just handed over arrived when the kernel stamped its last frame's last segment (never after
        the hand-over, never before the message before it); else now."""
        now = time.monotonic()
        k = tcpstamp.arrival_of(self._socks[0].frames, close=close) if self._socks else None
        if k is None:
            self.arrival_stamps["loop"] += 1
            t = now
        else:
            self.arrival_stamps["kernel"] += 1
            t = min(k, now)
        t = max(t, self._last_arrival)
        self._last_arrival = t
        return t

    def _on_message(self, data, now: float) -> None:
        m = self.provider.parse(data)
        self.messages[m.kind] = self.messages.get(m.kind, 0) + 1
        self.wire.append(("in", now, m.kind if m.kind != "other" else m.event, None))
        if m.kind in ("media", "mark", "clear") and m.stream not in (None, self.stream_id):
            raise ValueError(f"{m.event} for stream {str(m.stream)[:40]!r}, not the stream vlh opened "
                             f"({self.stream_id})")
        if m.kind == "media":
            if self.provider.encoding == "mulaw":
                pcm = mulaw.decode(m.payload)
            else:
                if len(m.payload) % 2:
                    raise ValueError("L16 media with an odd number of bytes")
                pcm = np.frombuffer(m.payload, "<i2").astype(np.int16)
            self.wire[-1] = ("in", now, "media", pcm)
            self.rate.add(now, len(pcm))
            if self.rate.doubled():
                raise ValueError(self.rate.describe())
            p = self.playout.push(pcm, now)
            lv = float(np.sqrt(np.mean((pcm.astype(np.float64) / 32768) ** 2))) if len(pcm) else 0.0
            self.ear_levels.append((p.start, lv))
        elif m.kind == "mark":
            at = self.playout.drained_at(now)
            self._tasks.append(asyncio.ensure_future(self._echo_mark(m.name, at)))
        elif m.kind == "clear":
            self.playout.clear(now)
            self.ear_levels = [(t, lv) for t, lv in self.ear_levels if t < now]

    async def _echo_mark(self, name: str, at: float) -> None:
        while True:  # a clear can bring the drain instant forward
            at = min(at, self.playout.drained_at(time.monotonic()))
            d = at - time.monotonic()
            if d <= 0:
                break
            await asyncio.sleep(min(d, 0.01))
        try:
            t = time.monotonic()
            await self._send(self.provider.mark_played(self.stream_id, self._next_seq(), name))
            self.marks_echoed.append((name, t))
            self.wire.append(("out", t, "mark", None))
        except Exception as exc:
            log.debug("mark echo failed: %s", exc)

    def ear_frames_since(self, t: float) -> list[tuple[float, float]]:
        now = time.monotonic()
        out = [(s, lv) for s, lv in self.ear_levels if s >= t and s <= now]
        # silence after the last played audio, as frames, so the runner can see a reply end
        last = max((p.end for p in self.playout.chunks), default=t)
        k = max(last, t)
        while k + 0.02 <= now:
            out.append((k, 0.0))
            k += 0.02
        return sorted(out)

    def _mark_disconnected(self, reason: str) -> None:
        if self._closing or self.disconnected:
            return
        self.disconnected = True
        self.disconnect_reason = reason
        log.warning("telephony call %s: %s", self.call_id, reason)

    # ---- the end
    def write_wire_log(self, path) -> None:
        """Every media-stream message (recordings/call-<n>.messages.parquet): direction (in: from the bot, out: to
        it), host instant (arrival / hand-over to the socket), event, and for media the 8 kHz samples as int16
        bytes — raw stamps a check can use without vlh's own detection."""
        import pandas as pd

        if not self.wire:
            return
        pd.DataFrame({"dir": [w[0] for w in self.wire], "t_mono": [w[1] for w in self.wire],
                      "event": [w[2] for w in self.wire],
                      "pcm16": [None if w[3] is None else w[3].astype("<i2").tobytes() for w in self.wire]}
                     ).to_parquet(path, index=False)

    def capture(self):
        for t, pcm in self.playout.runs():
            up = resample(pcm.astype(np.float32) / 32768.0, PHONE_RATE, SAMPLE_RATE)
            self.timeline.place(EAR, t, up)
        meta = {"transport": "ws-telephony", "provider": self.provider.name, "stream_id": self.stream_id,
                "pc_id": self.stream_id, "call_sid": self.call_id, "messages": dict(self.messages), "underruns": self.playout.underruns,
                "clears": self.playout.clears, "marks_echoed": len(self.marks_echoed),
                "mic_lateness_max_ms": 1e3 * max(self.lateness, default=0.0), "ear_rate": PHONE_RATE,
                "arrival_stamps": dict(self.arrival_stamps)}
        return self.timeline.capture(meta)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            try:
                await self._send(self.provider.stop(self.stream_id, self.call_id, self._next_seq()))
            except Exception:
                pass
        await cancel_and_wait(self._tasks)
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
