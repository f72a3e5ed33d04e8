"""The agent's outgoing audio: a paced track of 20 ms, 48 kHz mono frames, silence between replies.

Frame n is returned by `recv()` at `t_start + n·20 ms` (an absolute schedule, no sleep drift); its content is
taken from the reply queue at that instant, so audio queued just before a tick goes out in that frame. The track
encodes each frame into exactly one Opus packet (pts 960·n) that aiortc's sender packs into one RTP packet whose
timestamp is `ts_first + 960·n`, which is how the send hook (`FrameLedger.info_for_rtp`) finds the frame — and the
reply samples — inside each packet.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, Packet

from harness.audio import SAMPLE_RATE

FRAME = 960  # samples per 20 ms frame
FRAME_S = FRAME / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


@dataclass
class Segment:
    """A piece of one turn's reply audio. `first_voiced`: index in `pcm` of the reply's first voiced sample
    (only on the segment that holds it); `last`: no more audio follows for this reply."""

    turn: int
    pcm: np.ndarray
    first_voiced: int | None = None
    first: bool = False
    last: bool = False
    pos: int = 0


@dataclass
class Part:
    """The samples of one turn inside one frame."""

    turn: int
    offset: int  # first sample of this part inside the frame (0…959)
    count: int
    first_voiced_offset: int | None = None  # the reply's first voiced sample is at this frame offset
    reply_start: bool = False  # this frame holds the reply's first sample
    reply_end: bool = False  # this frame holds the reply's last sample


@dataclass
class FrameInfo:
    index: int
    sched: float  # the frame's slot on the schedule (host monotonic s)
    produced: float  # when recv() returned it
    parts: list[Part] = field(default_factory=list)


class SegmentQueue:
    """Queued reply audio, handed out in buffers of any length by `fill` (the paced track's 20 ms frames, or a
    sound device's callback buffers — possibly from another thread: every method holds a lock)."""

    def __init__(self):
        self._segments: deque[Segment] = deque()
        self._qlock = threading.Lock()

    def enqueue(self, seg: Segment) -> None:
        with self._qlock:
            self._segments.append(seg)

    @property
    def busy(self) -> bool:
        return bool(self._segments)

    def clear(self, turn: int | None = None) -> int:
        """Drop queued audio (of `turn`, or all); returns the number of samples cut."""
        cut = 0
        keep = deque()
        with self._qlock:
            for s in self._segments:
                if turn is None or s.turn == turn:
                    cut += len(s.pcm) - s.pos
                else:
                    keep.append(s)
            self._segments = keep
        return cut

    def fill(self, pcm: np.ndarray, info: FrameInfo) -> None:
        """Copy queued audio into `pcm` (int16, already silent) and list in `info.parts` whose samples went where."""
        size = len(pcm)
        at = 0
        with self._qlock:
            while at < size and self._segments:
                seg = self._segments[0]
                n = min(size - at, len(seg.pcm) - seg.pos)
                part = Part(turn=seg.turn, offset=at, count=n, reply_start=seg.first and seg.pos == 0)
                if seg.first_voiced is not None and seg.pos <= seg.first_voiced < seg.pos + n:
                    part.first_voiced_offset = at + seg.first_voiced - seg.pos
                pcm[at:at + n] = seg.pcm[seg.pos:seg.pos + n]
                seg.pos += n
                at += n
                if seg.pos >= len(seg.pcm):
                    self._segments.popleft()
                    part.reply_end = seg.last
                if n > 0 or part.reply_end:
                    info.parts.append(part)


class ReplyTrack(MediaStreamTrack, SegmentQueue):
    kind = "audio"

    def __init__(self):
        MediaStreamTrack.__init__(self)
        SegmentQueue.__init__(self)
        self._t0: float | None = None
        self._n = 0
        self.ledger = FrameLedger()
        self.max_lateness = 0.0
        self._opus = OpusFrames()

    @property
    def started(self) -> bool:
        return self._t0 is not None

    # -- pacing
    async def next_pcm(self) -> tuple[np.ndarray, FrameInfo]:
        """The next 20 ms of int16 audio, returned at its slot `t0 + n·20 ms` (never before)."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        sched = self._t0 + self._n * FRAME_S
        if sched > now:
            await asyncio.sleep(sched - now)
        pcm = np.zeros(FRAME, dtype=np.int16)
        info = FrameInfo(index=self._n, sched=sched, produced=0.0)
        self.fill(pcm, info)
        self._n += 1
        return pcm, info

    async def recv(self) -> Packet:
        """An Opus packet for aiortc's sender (encoded here, see `OpusFrames`), pts = 960·n."""
        pcm, info = await self.next_pcm()
        packet = self._opus.encode(pcm, info.index)
        info.produced = time.monotonic()
        self.max_lateness = max(self.max_lateness, info.produced - info.sched)
        self.ledger.add(info)
        return packet


class OpusFrames:
    """Encodes the track's frames itself, so aiortc's sender only packs them: no executor hop per frame and no
    per-frame audio-level computation in the event loop. aiortc's own `OpusEncoder` (same settings, same 312-sample
    delay). Steady silence is not re-encoded: after `QUIET` silent frames the encoder's last silent packet is
    reused until audio comes back (the encoder then resumes from silence, as if it had been fed all along)."""

    QUIET = 3

    def __init__(self):
        self.encoder = OpusEncoder()
        self._quiet = 0
        self._silence: bytes | None = None
        self.encoded = 0
        self.reused = 0

    def encode(self, pcm: np.ndarray, index: int) -> Packet:
        silent = not pcm.any()
        if silent and self._quiet >= self.QUIET and self._silence is not None:
            data = self._silence
            self.reused += 1
        else:
            frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = index * FRAME
            frame.time_base = TIME_BASE
            payloads, _ts = self.encoder.encode(frame)
            if len(payloads) != 1:  # aiortc's encoder gives one packet per 20 ms frame of 48 kHz input
                raise RuntimeError(f"Opus encoder returned {len(payloads)} packets for one 20 ms frame")
            data = payloads[0]
            self.encoded += 1
            self._quiet = self._quiet + 1 if silent else 0
            if silent and self._quiet >= self.QUIET:
                self._silence = data
        packet = Packet(data)
        packet.pts = index * FRAME
        packet.time_base = TIME_BASE
        return packet


class FrameLedger:
    """Frame infos waiting for their RTP packet. RTP timestamps are `ts_first + 960·index` (mod 2^32)."""

    def __init__(self, keep: int = 500):
        self._infos: dict[int, FrameInfo] = {}
        self._keep = keep
        self.ts_first: int | None = None
        self.mismatches = 0

    def add(self, info: FrameInfo) -> None:
        self._infos[info.index] = info
        old = info.index - self._keep
        if old in self._infos:
            del self._infos[old]

    def info_for_rtp(self, rtp_ts: int) -> FrameInfo | None:
        if self.ts_first is None:
            self.ts_first = rtp_ts
        delta = (rtp_ts - self.ts_first) & 0xFFFFFFFF
        if delta % FRAME:
            self.mismatches += 1
            return None
        info = self._infos.pop(delta // FRAME, None)
        if info is None:
            self.mismatches += 1
        return info


def to_int16(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.dtype == np.int16:
        return a
    return np.clip(np.round(a.astype(np.float64) * 32767.0), -32768, 32767).astype(np.int16)


class Stutter:
    """Insert `gap_ms` of silence after every `every_ms` of a reply's audio (counted across its segments)."""

    def __init__(self, gap_ms: float, every_ms: float):
        self.gap = int(round(gap_ms * SAMPLE_RATE / 1000))
        self.every = int(round(every_ms * SAMPLE_RATE / 1000))
        self._count = 0  # reply audio samples since the last gap
        self._out = 0  # reply samples emitted so far (including gaps)
        self.gaps: list[list[int]] = []  # [reply sample index where the gap starts, gap samples]

    @property
    def active(self) -> bool:
        return self.gap > 0 and self.every > 0

    def apply(self, pcm: np.ndarray, first_voiced: int | None = None) -> tuple[np.ndarray, int | None]:
        """`pcm` with the gaps inserted, and where `first_voiced` (an index into `pcm`) moved to."""
        if not self.active:
            self._out += len(pcm)
            return pcm, first_voiced
        pieces, i, out_len, moved = [], 0, 0, first_voiced
        while i < len(pcm):
            take = min(self.every - self._count, len(pcm) - i)
            pieces.append(pcm[i:i + take])
            out_len += take
            i += take
            self._count += take
            if self._count >= self.every and i < len(pcm):
                if first_voiced is not None and i <= first_voiced:
                    moved += self.gap
                pieces.append(np.zeros(self.gap, dtype=pcm.dtype))
                self.gaps.append([self._out + out_len, self.gap])
                out_len += self.gap
                self._count = 0
        self._out += out_len
        return (np.concatenate(pieces) if pieces else pcm), moved
