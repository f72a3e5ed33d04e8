"""Endpointing on the received audio: webrtcvad frames + a silence hangover on the arrival clock.

The user starts speaking once `speech_start_ms` of consecutive voiced VAD frames have arrived (the start is the
arrival of the first of them). While speaking, every voiced frame re-arms a timer at
`arrival of its packet + hangover`; when the timer fires the turn has ended (`user_speech_end_detected`).
Times are host `time.monotonic()` seconds (= the asyncio loop clock).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import webrtcvad

from harness.agent.timing import SPIN_S, sleep_until
from harness.audio import SAMPLE_RATE


@dataclass(frozen=True)
class PacketRef:
    """Where a voiced frame came from: its packet's arrival instant, sequence number and RTP timestamp."""

    arrival: float
    seq: int
    rtp_ts: int

    def as_dict(self, prefix: str) -> dict:
        return {f"{prefix}_arrival": self.arrival, f"{prefix}_seq": self.seq, f"{prefix}_rtp_ts": self.rtp_ts}


class Endpointer:
    """Feed decoded 48 kHz mono int16 packets in arrival order with `feed`.

    Callbacks: `on_start(first_voiced: PacketRef, t_confirmed)` and
    `on_end(first_voiced: PacketRef, last_voiced: PacketRef, t_detected)`.
    """

    def __init__(self, *, aggressiveness: int = 2, frame_ms: int = 20, speech_start_ms: float = 60.0,
                 hangover_ms: float = 300.0, on_start=None, on_end=None):
        self.vad = webrtcvad.Vad(int(aggressiveness))
        self.frame_ms = int(frame_ms)
        self.frame_len = SAMPLE_RATE * self.frame_ms // 1000
        self.start_frames = max(1, int(np.ceil(speech_start_ms / self.frame_ms - 1e-9)))
        self.hangover_s = hangover_ms / 1000.0
        self.on_start = on_start
        self.on_end = on_end
        self._buf = np.zeros(0, dtype=np.int16)
        self._run = 0
        self._run_first: PacketRef | None = None
        self.speaking = False
        self.first_voiced: PacketRef | None = None
        self.last_voiced: PacketRef | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._spin: asyncio.Task | None = None
        self.frames = 0
        self.voiced_frames = 0

    def feed(self, pcm: np.ndarray, ref: PacketRef) -> None:
        pcm = np.asarray(pcm, dtype=np.int16)
        buf = np.concatenate([self._buf, pcm]) if len(self._buf) else pcm
        n = len(buf) // self.frame_len
        for i in range(n):
            frame = buf[i * self.frame_len:(i + 1) * self.frame_len]
            self._frame(self.vad.is_speech(frame.tobytes(), SAMPLE_RATE), ref)
        self._buf = buf[n * self.frame_len:].copy()

    def _frame(self, voiced: bool, ref: PacketRef) -> None:
        self.frames += 1
        if voiced:
            self.voiced_frames += 1
        if self.speaking and ref.arrival >= self.last_voiced.arrival + self.hangover_s:
            # the hangover ran out before this packet arrived but its timer has not run yet (asyncio runs I/O
            # callbacks before due timers): the turn ended first
            self._expire()
        if not self.speaking:
            if not voiced:
                self._run, self._run_first = 0, None
                return
            if self._run == 0:
                self._run_first = ref
            self._run += 1
            if self._run >= self.start_frames:
                self.speaking = True
                self.first_voiced = self._run_first
                self.last_voiced = ref
                self._run, self._run_first = 0, None
                self._arm(ref.arrival)
                if self.on_start:
                    self.on_start(self.first_voiced, time.monotonic())
            return
        if voiced:
            self.last_voiced = ref
            self._arm(ref.arrival)

    def _arm(self, arrival: float) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        target = arrival + self.hangover_s
        # a plain timer until just before the end, then a precise wait (asyncio timers wake ~1 ms late)
        self._timer = loop.call_at(target - SPIN_S, self._near_end, target)

    def _near_end(self, target: float) -> None:
        self._timer = None
        self._spin = asyncio.ensure_future(self._expire_at(target))

    async def _expire_at(self, target: float) -> None:
        await sleep_until(target)
        self._spin = None
        self._expire()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._spin is not None and self._spin is not asyncio.current_task():
            self._spin.cancel()
        self._spin = None

    def _expire(self) -> None:
        t = time.monotonic()
        self._disarm()
        self.speaking = False
        first, last = self.first_voiced, self.last_voiced
        self.first_voiced = self.last_voiced = None
        if self.on_end:
            self.on_end(first, last, t)

    def close(self) -> None:
        self._disarm()
