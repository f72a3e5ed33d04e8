"""The WebRTC transport: an aiortc client that calls a voice agent the way a browser would, and records both
directions on the host clock (design.md §1).

- Signalling: `POST <agent URL>` with `{"sdp", "type": "offer"}` → `{"sdp", "type": "answer", "pc_id"}`
  (pipecat SmallWebRTC's `/api/offer` and aiortc-example servers). An ordered data channel labelled `chat` is opened
  before the offer; vlh speaks RTVI politely (`client-ready`, `ping: <ms>` keep-alives) and sends `vlh.ping`.
- Mic: a paced track hands 20 ms frames to aiortc at `t_start + n·20 ms`; each frame is written to ch0 at the
  instant it really left (that target + the event loop's lateness), so ch0 and the turn's instants share one clock.
- Ear: aiortc's receiver (and its hidden 80 ms jitter buffer) is bypassed: every RTP packet is stamped on arrival
  and fed to vlh's playout emulator, whose 20 ms output frames are written to ch1 at their playout instants.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from array import array
from collections import deque
from fractions import Fraction
from urllib.parse import urlsplit

import numpy as np

from harness import __version__
from harness.audio.capture import EAR, MIC, SAMPLE_RATE, Timeline
from harness.errors import AgentUnreachable, VlhError
from harness.telemetry.collector import ARRIVAL_STAMP_S, TelemetryLog
from harness.transports.tasks import cancel_and_wait
from harness.devices import kstamp
from harness.transports.webrtc.playout import FRAME, PlayoutEmulator
from harness.results.redact import redact_url

log = logging.getLogger(__name__)
FRAME_S = FRAME / SAMPLE_RATE


SILENCE_SETTLE = 10  # silent frames the Opus encoder gets before its silence packet is reused


class MicTrack:
    """An outgoing audio track paced by the host clock. Built lazily on aiortc's MediaStreamTrack."""

    def __new__(cls, *a, **k):
        from aiortc import MediaStreamTrack

        class _MicTrack(MediaStreamTrack):
            kind = "audio"

            def __init__(self, timeline: Timeline | None):
                super().__init__()
                self.timeline = timeline
                self.t_start: float | None = None
                self.frames_sent = 0
                self.started = asyncio.Event()
                self._segments: deque = deque()  # (start_sample_abs, samples)
                self._sched_end = 0
                self.lateness = array("d")  # s, per frame sent (indexable and sliceable like a list, 8 B each)
                self.background = None  # callable(first sample, n) → n samples mixed in (a scenario's room noise)
                from aiortc.codecs.opus import OpusEncoder

                self._encoder = OpusEncoder()
                self._silent_run = 0  # all-zero frames in a row
                self._silence: bytes | None = None  # the settled encoder's packet for a silent frame

            def next_frame_sample(self) -> int:
                return (self.frames_sent + 1) * FRAME  # a frame boundary safely after the one being sent

            def schedule(self, samples: np.ndarray, at: float | None = None) -> float:
                """Queue speech; returns the host instant its first sample will be sent."""
                if self.t_start is None:
                    raise RuntimeError("mic track has not started")
                earliest = self.next_frame_sample()
                if at is None:
                    start = max(earliest, self._sched_end)
                else:
                    start = max(earliest, int(round((at - self.t_start) * SAMPLE_RATE)))
                self._segments.append((start, np.asarray(samples, np.float32)))
                self._sched_end = max(self._sched_end, start + len(samples))
                return self.t_start + start / SAMPLE_RATE

            def busy_until(self) -> float:
                return self.t_start + self._sched_end / SAMPLE_RATE if self.t_start else 0.0

            async def recv(self):
                import av

                if self.t_start is None:
                    self.t_start = time.monotonic()
                    if self.timeline is not None:
                        self.timeline.t0_mono = self.t_start
                    self.started.set()
                n = self.frames_sent
                target = self.t_start + n * FRAME_S
                wait = target - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                late = time.monotonic() - target
                self.lateness.append(late)
                a, b = n * FRAME, (n + 1) * FRAME
                # the capture holds the frame where it really left (one time base with the turn's instants)
                at = a + int(round(late * SAMPLE_RATE))
                buf = np.zeros(FRAME, np.float32)
                while self._segments and self._segments[0][0] + len(self._segments[0][1]) <= a:
                    self._segments.popleft()
                for start, seg in self._segments:
                    if start >= b:
                        break
                    lo, hi = max(a, start), min(b, start + len(seg))
                    if hi > lo:
                        buf[lo - a:hi - a] += seg[lo - start:hi - start]
                if self.background is not None:
                    buf += self.background(a, FRAME)
                self.frames_sent = n + 1
                if not buf.any():
                    # Digital silence (most of a call): once the encoder has settled on it, every silent frame
                    # is the same packet — send that packet again instead of encoding (the encoder's state is
                    # the settled silence either way, so the speech that follows encodes as it would have).
                    self._silent_run += 1
                    if self._silent_run > SILENCE_SETTLE and self._silence is not None:
                        if self.timeline is not None:
                            self.timeline.extend(MIC, at + FRAME)
                        return self._packet(self._silence, a)
                else:
                    self._silent_run = 0
                if self.timeline is not None:
                    self.timeline.write_at(MIC, at, buf)
                pcm = np.clip(buf * 32768.0, -32768, 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                frame.pts = a
                frame.time_base = Fraction(1, SAMPLE_RATE)
                # Encode here, in the loop (≈50 µs): aiortc would hop to a thread pool for every frame, which
                # costs more than the encoding under the GIL. A packet is passed through as it is.
                payloads, _ = self._encoder.encode(frame)
                payload = payloads[0] if payloads else b""
                if self._silent_run == SILENCE_SETTLE:
                    self._silence = payload
                return self._packet(payload, a)

            @staticmethod
            def _packet(payload: bytes, pts: int):
                import av

                packet = av.Packet(payload)
                packet.pts = pts
                packet.time_base = Fraction(1, SAMPLE_RATE)
                return packet

        return _MicTrack(*a, **k)


class LevelLog:
    """(instant, level) pairs in two typed arrays (16 bytes a frame instead of a tuple of floats, ≈ 100 bytes):
    `append`, `len`, indexing and slicing give tuples, as the list it replaces did. Given arrays it is a view on
    them (the call's ear levels are the playout log's `t` and `level` columns: kept once, not twice)."""

    def __init__(self, t: array | None = None, level: array | None = None):
        self.t = array("d") if t is None else t
        self.level = array("d") if level is None else level

    def append(self, item: tuple[float, float]) -> None:
        self.t.append(item[0])
        self.level.append(item[1])

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(zip(self.t[i], self.level[i]))
        return self.t[i], self.level[i]

    def __iter__(self):
        return zip(self.t, self.level)


class StallLog:
    """(start, duration) of the loop's stalls in two typed arrays (16 bytes a stall; a deque of tuples took ≈ 110),
    keeping at least the last `maxlen` (the oldest half is dropped when twice that is reached). Iterates as tuples."""

    def __init__(self, maxlen: int = 10000):
        self.maxlen = maxlen
        self.t, self.d = array("d"), array("d")

    def append(self, item: tuple[float, float]) -> None:
        self.t.append(item[0])
        self.d.append(item[1])
        if len(self.t) >= 2 * self.maxlen:
            del self.t[:-self.maxlen], self.d[:-self.maxlen]

    def __len__(self) -> int:
        return len(self.t)

    def __iter__(self):
        return zip(self.t, self.d)


class LoopMonitor:
    """One per event loop, shared by all its calls: records stalls of the loop (it wakes every 10 ms)."""

    _by_loop: dict = {}

    def __init__(self, interval: float = 0.01, threshold: float = ARRIVAL_STAMP_S):
        self.interval, self.threshold = interval, threshold
        self.stalls = StallLog(10000)
        self.users = 0
        self.task = asyncio.ensure_future(self._run())

    @classmethod
    def for_running_loop(cls) -> "LoopMonitor":
        loop = asyncio.get_running_loop()
        mon = cls._by_loop.get(loop)
        if mon is None or mon.task.done():
            mon = cls._by_loop[loop] = cls()
        return mon

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            lag = now - last - self.interval
            if lag > self.threshold:
                self.stalls.append((last + self.interval, lag))
            last = now


def parse_headers(pairs: list[str] | None) -> dict[str, str]:
    """'Name: value' strings → dict. `$VAR` / `${VAR}` in a value, or a whole value `env:VAR`, is read from the
    environment, so a token need not appear on the command line."""
    import os
    import re

    out = {}
    for raw in pairs or []:
        if ":" not in raw:
            raise VlhError(f"--header {raw.split('=')[0][:40]!r}: expected 'Name: value' "
                           "(e.g. 'Authorization: Bearer $TOKEN')")
        name, value = (x.strip() for x in raw.split(":", 1))

        def env(var: str) -> str:
            if var not in os.environ:
                raise VlhError(f"--header {name}: environment variable {var} is not set")
            return os.environ[var]

        if value.startswith("env:"):
            value = env(value[4:])
        else:
            value = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env(m.group(1)), value)
        out[name] = value
    return out


def offer_url(url: str) -> str:
    """Accept a base URL (http://host:port) and add pipecat's `/api/offer`; keep any explicit path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise VlhError(f"--agent {redact_url(url)}: expected an http(s) URL such as http://127.0.0.1:7860/api/offer")
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/api/offer"
    return url


class WebRTCCall:
    """One call to a voice agent over WebRTC."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, jitter_buffer: str = "adaptive",
                 processor_map: dict[str, str] | None = None, connect_timeout: float = 15.0,
                 ping_interval: float = 0.2, stall_timeout: float = 3.0):
        self.url = offer_url(url)
        self.headers = dict(headers or {})
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.stall_timeout = stall_timeout
        self.timeline = Timeline(t0_mono=time.monotonic())
        self.telemetry = TelemetryLog(processor_map)
        self.playout = PlayoutEmulator(jitter_buffer)
        self.playout.on_frame = self._on_ear_frame
        # (playout instant, frame RMS) per ear frame, live: a view on the playout log, which records every ear frame
        self.ear_levels = LevelLog(self.playout.ticks.t, self.playout.ticks.level)
        self.mic = None
        self.pc = None
        self.channel = None
        self.pc_id = None
        self.disconnected = False
        self.disconnect_reason = ""
        self.last_packet = None
        self.rtp_packets = 0
        self._tasks: list[asyncio.Task] = []
        self._monitor = None
        self._opus_pt: set[int] = set()
        self._wire_stamps: dict[int, float] = {}  # RTP sequence number → datagram arrival
        self.loop_stamped = 0  # RTP datagrams without a kernel stamp (stamped by the loop instead)

    # ---- set-up ------------------------------------------------------------------------------------------------
    async def connect(self) -> None:
        import aiohttp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicTrack(self.timeline)
        pc.addTransceiver(self.mic, direction="sendrecv")
        self.channel = pc.createDataChannel("chat", ordered=True)
        self.channel.on("message", self._on_message)
        self.channel.on("open", self._on_open)

        @pc.on("connectionstatechange")
        def _state():
            if pc.connectionState in ("failed", "closed") and not self.disconnected:
                self._mark_disconnected(f"peer connection {pc.connectionState}")

        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": "offer"}
        shown = redact_url(self.url)
        # a call that never came up is not "disconnected": closing it must not log "call None disconnected"
        self._closing = True
        try:
            timeout = aiohttp.ClientTimeout(total=self.connect_timeout)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(self.url, json=body, headers=self.headers) as resp:
                    text = await resp.text()
                    if resp.status >= 500:  # the agent is there but cannot take a call: as good as unreachable
                        raise AgentUnreachable(f"agent {shown} answered HTTP {resp.status}: {_snippet(text)}")
                    if resp.status >= 400:
                        raise VlhError(f"agent {shown} answered HTTP {resp.status}: {_snippet(text)}")
        except VlhError:
            await pc.close()
            raise
        except asyncio.TimeoutError:
            await pc.close()
            raise AgentUnreachable(f"agent {shown}: no answer to the WebRTC offer (HTTP POST) within "
                                   f"{self.connect_timeout:g} s; is the agent stuck? (raise --connect-timeout to "
                                   "wait longer)") from None
        except (aiohttp.ClientError, OSError) as exc:
            await pc.close()
            raise AgentUnreachable(f"agent {shown} unreachable: {exc.__class__.__name__} {_snippet(str(exc))}; "
                                   "is it running, and is --agent the offer URL?") from None
        try:
            answer = json.loads(text)
            sdp, typ = answer["sdp"], answer.get("type", "answer")
        except (ValueError, KeyError, TypeError):
            await pc.close()
            raise VlhError(f"agent {shown} did not answer with JSON {{'sdp', 'type'}}: {_snippet(text)}") from None
        if "m=audio" not in sdp or "m=audio 0 " in sdp:
            await pc.close()
            raise VlhError(f"agent {shown} answered without an audio track; vlh needs two-way audio")
        self.pc_id = answer.get("pc_id")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=typ))
        except Exception as exc:  # aiortc raises ValueError & co on a bad SDP
            await pc.close()
            raise VlhError(f"agent {shown} sent an SDP answer vlh cannot use: {_snippet(str(exc))}") from None
        self._hook_receiver()
        try:
            await asyncio.wait_for(self.mic.started.wait(), self.connect_timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise AgentUnreachable(f"agent {shown}: the WebRTC media connection (ICE/DTLS) did not come up within "
                                   f"{self.connect_timeout:g} s (--connect-timeout)") from None
        self._closing = False
        self._tasks.append(asyncio.ensure_future(self._playout_loop()))
        self._tasks.append(asyncio.ensure_future(self._ping_loop()))
        self._monitor = LoopMonitor.for_running_loop()

    def _hook_receiver(self) -> None:
        """Bypass aiortc's audio jitter buffer and decoder: stamp each RTP packet on arrival, feed the emulator.

        The stamp is the kernel's receive instant of the datagram (harness/devices/kstamp.py), read where the
        datagram leaves the socket (aioice's protocol `datagram_received`): an event loop busy with other calls
        does not delay it. Where the kernel gives no stamp, the loop's own instant at that point is used (before
        the queue hop to the DTLS transport and SRTP decryption, ≈0.5 ms here). The SRTP header is clear, so the
        datagram's sequence number finds its stamp again once aiortc hands over the decrypted packet."""
        for tr in self.pc.getTransceivers():
            if tr.kind != "audio":
                continue
            try:
                conn = tr.receiver.transport.transport._connection
                for proto in conn._protocols:
                    self._hook_protocol(proto)
            except AttributeError:  # another aiortc/aioice layout: stamp in the RTP handler instead
                log.debug("aioice hook unavailable; RTP arrival stamped after decryption")
            for codec in (tr.receiver._RTCRtpReceiver__codecs or {}).values() if hasattr(
                    tr.receiver, "_RTCRtpReceiver__codecs") else []:
                if codec.mimeType.lower() == "audio/opus":
                    self._opus_pt.add(codec.payloadType)
            tr.receiver._handle_rtp_packet = self._on_rtp

    def _hook_protocol(self, proto) -> None:
        sock = proto.transport.get_extra_info("socket") if proto.transport else None
        fd = sock.fileno() if sock is not None and kstamp.enable(sock) else None
        orig = proto.datagram_received
        stamps = self._wire_stamps

        def datagram_received(data, addr, _orig=orig) -> None:
            if len(data) >= 12 and 128 <= data[0] <= 191 and not (192 <= data[1] <= 223):
                t = kstamp.last_read(fd) if fd is not None else None
                if t is None:
                    t = time.monotonic()
                    self.loop_stamped += 1
                stamps[int.from_bytes(data[2:4], "big")] = t
                if len(stamps) > 512:
                    for k in list(stamps)[:256]:
                        stamps.pop(k, None)
            _orig(data, addr)

        proto.datagram_received = datagram_received

    async def _on_rtp(self, packet, arrival_time_ms: int) -> None:
        now = self._wire_stamps.pop(packet.sequence_number, None) or time.monotonic()
        if self._opus_pt and packet.payload_type not in self._opus_pt:
            return
        self.rtp_packets += 1
        self.last_packet = now
        self.playout.push(packet.sequence_number, packet.timestamp, now, bytes(packet.payload))

    def _on_ear_frame(self, t: float, pcm: np.ndarray, level: float) -> None:
        if level > 0.0:
            self.timeline.place(EAR, t, pcm)
        else:
            self.timeline.extend(EAR, int(round((t - self.timeline.t0_mono) * SAMPLE_RATE)) + len(pcm))
        # (t, level) is already in the playout log, which `ear_levels` reads

    def _on_open(self) -> None:
        self._send({"label": "rtvi-ai", "type": "client-ready", "id": uuid.uuid4().hex[:8],
                    "data": {"version": "1.0.0", "about": {"library": "vlh", "library_version": __version__}}})

    def _on_message(self, message) -> None:
        self.telemetry.feed(message, time.monotonic())

    def _send(self, obj) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            try:
                self.channel.send(obj if isinstance(obj, str) else json.dumps(obj))
            except Exception as exc:  # closing channel
                log.debug("data channel send failed: %s", exc)

    async def _ping_loop(self) -> None:
        n = 0
        while not self.disconnected:
            await asyncio.sleep(self.ping_interval)
            if self.channel is not None and self.channel.readyState == "open":
                self._send(self.telemetry.make_ping(time.monotonic()))
                n += 1
                if n % max(1, int(1.0 / self.ping_interval)) == 0:
                    self._send(f"ping: {int(time.time() * 1000)}")

    @property
    def stalls(self) -> list[tuple[float, float]]:
        """(start, duration) of this process's event-loop stalls: each one delays every arrival stamp."""
        return list(self._monitor.stalls) if self._monitor else []

    async def _playout_loop(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            self.playout.advance(now - 0.002)
            if (not self.disconnected and self.last_packet is not None
                    and now - self.last_packet > self.stall_timeout):
                self._mark_disconnected(f"no audio from the agent for {self.stall_timeout:.0f} s")
            if self.pc is not None and self.pc.connectionState in ("failed", "closed") and not self.disconnected:
                self._mark_disconnected(f"peer connection {self.pc.connectionState}")

    def _mark_disconnected(self, reason: str) -> None:
        if getattr(self, "_closing", False):
            return
        self.disconnected = True
        self.disconnect_reason = reason
        log.warning("call %s disconnected: %s", self.pc_id, reason)

    # ---- use ---------------------------------------------------------------------------------------------------
    def schedule(self, samples: np.ndarray, at: float | None = None) -> float:
        return self.mic.schedule(samples, at)

    def ear_frames_since(self, t: float) -> list[tuple[float, float]]:
        lv = self.ear_levels
        ts = lv.t
        i = len(ts)
        while i > 0 and ts[i - 1] >= t:
            i -= 1
        return lv[i:]

    def capture(self):
        meta = {"transport": "webrtc", "pc_id": self.pc_id, "playout": dict(self.playout.counts),
                "rtp_packets": self.rtp_packets, "rtp_loop_stamped": self.loop_stamped,
                "mic_lateness_max_ms": 1e3 * max(self.mic.lateness, default=0.0) if self.mic else None,
                "loop_stalls": len(self.stalls),
                "loop_stall_max_ms": 1e3 * max((d for _, d in self.stalls), default=0.0)}
        return self.timeline.capture(meta)

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self.playout.t_start is not None and self.last_packet is not None:
            self.playout.advance(min(time.monotonic(), self.last_packet + self.playout.target_delay + 0.2))
        if self.pc is not None:
            try:
                await asyncio.wait_for(self.pc.close(), 5)
            except (asyncio.TimeoutError, Exception):
                pass


def _snippet(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "…"
