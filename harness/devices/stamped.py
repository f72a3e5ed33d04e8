"""Sound-device streams stamped with the host clock, and the fit that gives every sample a host time.

Each callback of a PortAudio stream is stamped with `time.monotonic()` on entry. PortAudio's own ADC/DAC times are
not used (on the ALSA `pulse` plugin they are off by ±100 ms). A stamp is never early, only late (scheduling), so
the *floor* of `stamp − index/rate` over a stream is the stream's clock offset:

- input: callback k delivers samples up to (excluding) `end_k`; `time(i) = offset + i/rate` says when sample `i`
  had arrived at the harness;
- output: callback k asks for samples from `start_k`; `time(i)` is when sample `i` left the harness.

The floor is taken per window (`window_s`); a drift (device clock vs host clock) is fitted robustly over the
windows; a persistent step of the floor is a **discontinuity** — samples lost (step up: time passed without
samples) or inserted/replayed (step down) — and starts a new segment with its own offset, so no sample is placed
at a wrong time without it being reported. PortAudio's status flags (overflow/underflow) are counted as well; on the
ALSA pulse plugin they are not reliable (an output underrun can pass unflagged), the stamps are.

`StampedInput` / `StampedOutput` are the two stream kinds (one device each, mono float32, 48 kHz). The harness's
loopback transport uses them, and so can an agent running on the same devices in another process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from harness.audio import SAMPLE_RATE
from harness.errors import VlhError

log = logging.getLogger(__name__)

DEFAULT_LATENCY = 0.05  # s, PortAudio suggested latency: robust on a busy 2-core machine, calibrated away
WINDOW_S = 0.5
STEP_TOL_S = 0.002
LOCAL_WINDOWS = 4  # a step is judged against the median floor of this many preceding windows
DRIFT_MIN_S = 10.0  # fit a drift only over at least this much audio
RT_PRIORITY = 5  # SCHED_RR priority of the PulseAudio client threads (PortAudio's callback thread gets its own)


# ---- the clock fit ----------------------------------------------------------------------------------------------
@dataclass
class Segment:
    start: int  # first sample index of the segment
    offset: float  # time(i) = offset + i / rate * (1 + drift)


@dataclass
class StreamClock:
    """Sample index ↔ host monotonic time for one stream, piecewise (one piece per discontinuity)."""

    sample_rate: int = SAMPLE_RATE
    segments: list[Segment] = field(default_factory=lambda: [Segment(0, 0.0)])
    drift: float = 0.0  # relative rate error of the device clock vs the host clock (ppm = drift·1e6)
    discontinuities: list[dict] = field(default_factory=list)
    lateness_ms: dict = field(default_factory=dict)  # callback lateness above the floor: p50, p99, max
    callbacks: int = 0

    @classmethod
    def fit(cls, stamps, index, starts, sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S,
            tol_s: float = STEP_TOL_S) -> "StreamClock":
        """`stamps[k]`: host time of callback k; `index[k]`: the sample index that stamp refers to (input: end of
        the delivered chunk, output: start of the requested chunk); `starts[k]`: first sample index of chunk k."""
        t = np.asarray(stamps, np.float64)
        n = np.asarray(index, np.float64)
        starts = np.asarray(starts, np.int64)
        if len(t) == 0:
            return cls(sample_rate)
        r = t - n / sample_rate
        win = np.floor((t - t[0]) / window_s).astype(np.int64)
        uniq, first = np.unique(win, return_index=True)
        bounds = list(first) + [len(t)]
        w_floor, w_n, w_lo, w_hi = [], [], [], []
        for a, b in zip(bounds[:-1], bounds[1:]):
            k = a + int(np.argmin(r[a:b]))
            w_floor.append(r[k]); w_n.append(n[k]); w_lo.append(a); w_hi.append(b)
        w_floor, w_n = np.array(w_floor), np.array(w_n)
        # steps: a window off the local level (the last few windows of the segment) by more than tol, confirmed
        # by the next window — a drift moves the local level only by drift × a few windows
        seg_w = [0]
        for i in range(1, len(w_floor)):
            ref = float(np.median(w_floor[max(seg_w[-1], i - LOCAL_WINDOWS):i]))
            if (abs(w_floor[i] - ref) > tol_s and i + 1 < len(w_floor)
                    and abs(w_floor[i + 1] - w_floor[i]) <= tol_s):
                seg_w.append(i)
        bounds_w = seg_w + [len(w_floor)]
        seg_of = np.repeat(np.arange(len(seg_w)), np.diff(bounds_w))
        drift = 0.0
        if (w_n[-1] - w_n[0]) / sample_rate >= DRIFT_MIN_S and len(w_n) >= 8:
            drift = _theil_sen(w_n / sample_rate, w_floor, seg_of)
        f = w_floor - drift * w_n / sample_rate
        rd = r - drift * n / sample_rate
        segs, discs = [], []
        for j, w0 in enumerate(seg_w):
            w1 = bounds_w[j + 1]
            level = float(np.median(f[w0:w1]))
            if j == 0:
                segs.append(Segment(0, level))
                continue
            prev = segs[-1].offset
            lo, hi = w_lo[w0 - 1], w_hi[w0]
            if level > prev:  # samples missing: the first callback from which the floor stays up
                k = lo + next((q for q in range(hi - lo) if rd[lo + q:hi].min() > prev + tol_s / 2), hi - lo - 1)
            else:  # samples repeated / clock jumped back: the first callback below the old floor
                k = lo + next((q for q in range(hi - lo) if rd[lo + q] < prev - tol_s / 2), hi - lo - 1)
            segs.append(Segment(int(starts[k]), level))
            discs.append({"index": int(starts[k]), "t_mono": float(t[k]), "step_ms": (level - prev) * 1e3})
        clock = cls(sample_rate, segs, float(drift), discs, callbacks=len(t))
        late = rd - clock._offsets(np.asarray(starts))
        clock.lateness_ms = {"p50": float(np.percentile(late, 50) * 1e3), "p99": float(np.percentile(late, 99) * 1e3),
                             "max": float(late.max() * 1e3)}
        return clock

    def _offsets(self, idx: np.ndarray) -> np.ndarray:
        starts = np.array([s.start for s in self.segments])
        offs = np.array([s.offset for s in self.segments])
        return offs[np.clip(np.searchsorted(starts, idx, side="right") - 1, 0, None)]

    def time_of(self, index):
        """Host monotonic time of sample `index` (scalar or array)."""
        idx = np.asarray(index, np.float64)
        out = self._offsets(idx) + idx / self.sample_rate * (1.0 + self.drift)
        return float(out) if out.ndim == 0 else out

    def index_of(self, t_mono: float) -> int:
        """Nearest sample index at host time `t_mono` (last segment whose start precedes it)."""
        best = 0
        for s in self.segments:
            i = (t_mono - s.offset) * self.sample_rate / (1.0 + self.drift)
            if i >= s.start:
                best = int(round(i))
        return best

    def pieces(self, total: int) -> list[tuple[int, int, float]]:
        """[(first index, end index, host time of the first index)] covering samples 0..total."""
        out = []
        for j, s in enumerate(self.segments):
            end = self.segments[j + 1].start if j + 1 < len(self.segments) else total
            end = min(end, total)
            if end > s.start:
                out.append((s.start, end, self.time_of(s.start)))
        return out

    def summary(self) -> dict:
        return {"callbacks": self.callbacks, "drift_ppm": self.drift * 1e6,
                "discontinuities": list(self.discontinuities), "lateness_ms": dict(self.lateness_ms)}


def _theil_sen(x: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
    """Median slope over pairs of points in the same group (a step between segments is not a slope)."""
    i, j = np.triu_indices(len(x), 1)
    dx = x[j] - x[i]
    ok = (dx > 1.0) & (group[i] == group[j])  # pairs at least 1 s apart: the floor's jitter over 1 s is < 1e-4
    return float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else 0.0


# ---- streams ----------------------------------------------------------------------------------------------------
FLAG_NAMES = ("input_overflow", "input_underflow", "output_underflow", "output_overflow", "priming_output")


class _Stamped:
    kind = "?"

    def __init__(self, device, *, sample_rate: int = SAMPLE_RATE, latency: float = DEFAULT_LATENCY,
                 label: str | None = None, realtime: bool = True, keep_audio: bool = True):
        self.device = device
        self.keep_audio = keep_audio  # False: only the stamps are kept (a long-running agent), samples() is empty
        self.sample_rate = sample_rate
        self.latency = latency
        self.label = label or str(device)
        self.realtime_requested = realtime
        self.realtime = False
        self.stream = None
        self.stamps: list[float] = []
        self.starts: list[int] = []
        self.chunks: list[np.ndarray] = []
        self.flags: dict[str, int] = {k: 0 for k in FLAG_NAMES}
        self.flag_events: list[tuple[float, int, str]] = []
        self.n = 0  # samples so far
        self._win = [float("inf"), float("inf"), 0.0]  # previous window's floor, this window's, its start
        self.started_at: float | None = None

    # -- set-up
    def _resolve(self) -> None:
        import sounddevice as sd

        try:
            info = sd.query_devices(self.device, kind=self.kind)
        except ValueError:
            names = [d["name"] for d in sd.query_devices()
                     if d[f"max_{self.kind}_channels"] > 0]
            raise VlhError(f"sound {self.kind} device {self.device!r} not found; {self.kind} devices here: "
                           f"{', '.join(names) or 'none'} (for vlh's loopback devices run `vlh loopback up`; "
                           "`vlh loopback status` lists them)") from None
        self.device_name = info["name"]
        check = sd.check_input_settings if self.kind == "input" else sd.check_output_settings
        try:
            check(device=self.device, channels=1, dtype="float32", samplerate=self.sample_rate)
        except Exception as exc:  # sounddevice.PortAudioError
            raise VlhError(f"sound {self.kind} device {self.device_name!r} cannot run at {self.sample_rate} Hz mono "
                           f"float32 ({exc}; its default rate is {info['default_samplerate']:.0f} Hz): vlh records "
                           f"and plays at {self.sample_rate} Hz — pick another device or set the device's rate") \
                from None

    def open(self) -> None:
        import sounddevice as sd

        self._resolve()
        cls = sd.InputStream if self.kind == "input" else sd.OutputStream
        try:
            with _inherited_priority(self.realtime_requested):
                self.stream = cls(device=self.device, channels=1, samplerate=self.sample_rate, dtype="float32",
                                  latency=self.latency, callback=self._callback)
        except Exception as exc:
            raise VlhError(f"cannot open sound {self.kind} device {self.device_name!r}: {exc} (is PulseAudio "
                           "running? `vlh loopback status`)") from None
        if self.realtime_requested and not os.environ.get("VLH_NO_RT"):
            self.realtime = enable_realtime(self.stream)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.stream.start()

    def stop(self) -> None:
        if self.stream is not None:
            try:
                self.stream.stop()
            except Exception as exc:  # already dead
                log.debug("%s: stop: %s", self.label, exc)

    def close(self) -> None:
        if self.stream is not None:
            self.stop()
            try:
                self.stream.close()
            except Exception as exc:
                log.debug("%s: close: %s", self.label, exc)
            self.stream = None

    @property
    def active(self) -> bool:
        return self.stream is not None and bool(self.stream.active)

    def _flag(self, now: float, status) -> None:
        names = [k for k in FLAG_NAMES if getattr(status, k, False)]
        for k in names:
            self.flags[k] += 1
        self.flag_events.append((now, self.n, ",".join(names)))

    # -- results
    def clock(self) -> StreamClock:
        k = len(self.stamps)
        return StreamClock.fit(self.stamps[:k], self._ref_index(k), self.starts[:k], self.sample_rate)

    def samples(self) -> np.ndarray:
        k = len(self.chunks)
        return np.concatenate(self.chunks[:k]) if k else np.zeros(0, np.float32)

    def _note(self, now: float, r: float) -> None:
        """Live floor: the minimum of `stamp − index/rate` over this and the previous window (so it follows a
        discontinuity within two windows)."""
        w = self._win
        if now - w[2] > WINDOW_S:
            w[0], w[1], w[2] = w[1], r, now
        elif r < w[1]:
            w[1] = r

    @property
    def floor(self) -> float:
        """Live estimate of the clock offset (inf before the first callback)."""
        return min(self._win[0], self._win[1])

    def live_time_of(self, index: float) -> float:
        return self.floor + index / self.sample_rate

    def stats(self, clock: StreamClock | None = None) -> dict:
        clock = clock or self.clock()
        d = clock.discontinuities
        return {"device": self.label, "kind": self.kind, "frames": self.n, "realtime": self.realtime,
                "flags": dict(self.flags), **clock.summary(),
                # step up: time passed without samples (input: samples lost; output: the device ran dry)
                "gaps": sum(1 for x in d if x["step_ms"] > 0),
                # step down: more samples than time (repeated or inserted samples)
                "jumps_back": sum(1 for x in d if x["step_ms"] < 0)}


class StampedInput(_Stamped):
    """A callback input stream; every chunk kept with its host stamp."""

    kind = "input"

    def __init__(self, *a, on_chunk=None, **k):
        super().__init__(*a, **k)
        self.ends: list[int] = []
        self.on_chunk = on_chunk  # on_chunk(samples, start index, host stamp), in the callback thread


    def _callback(self, indata, frames, tinfo, status) -> None:
        now = time.monotonic()
        if status:
            self._flag(now, status)
        chunk = indata[:, 0].copy()
        if self.keep_audio:
            self.chunks.append(chunk)
        start = self.n
        self.n = start + frames
        self.starts.append(start)
        self.ends.append(self.n)
        self.stamps.append(now)
        self._note(now, now - self.n / self.sample_rate)
        if self.on_chunk is not None:
            self.on_chunk(chunk, start, now)

    def _ref_index(self, k: int):
        return self.ends[:k]


class StampedOutput(_Stamped):
    """A callback output stream that plays scheduled clips (silence between them) at exact sample indexes and keeps
    what it wrote."""

    kind = "output"

    def __init__(self, *a, fill=None, **k):
        super().__init__(*a, **k)
        self.fill = fill  # fill(out, first index, host stamp): adds audio to the buffer, in the callback thread
        self._lock = threading.Lock()
        self._clips: list[list] = []  # [start index, samples]
        self.clips: list[tuple[int, int]] = []  # every scheduled clip: (start index, length)

    def schedule(self, samples: np.ndarray, at_index: int | None = None) -> int:
        """Queue `samples` to start at sample index `at_index` (or as soon as possible, or at once if that index has
        already been written). Returns the start index."""
        x = np.asarray(samples, np.float32).reshape(-1)
        with self._lock:
            start = max(self.n, int(at_index) if at_index is not None else 0)
            self._clips.append([start, x])
            self.clips.append((start, len(x)))
        return start

    def schedule_at(self, t_mono: float, samples: np.ndarray) -> int:
        idx = int(round((t_mono - self.floor) * self.sample_rate)) if np.isfinite(self.floor) else None
        return self.schedule(samples, idx)

    def busy_until_index(self) -> int:
        with self._lock:
            return max([s + len(x) for s, x in self._clips] + [self.n])

    def _callback(self, outdata, frames, tinfo, status) -> None:
        now = time.monotonic()
        if status:
            self._flag(now, status)
        out = outdata[:, 0]
        out.fill(0.0)
        with self._lock:
            n = self.n
            end = n + frames
            keep = []
            for clip in self._clips:
                s, x = clip
                e = s + len(x)
                if s < end and e > n:
                    a, b = max(s, n), min(e, end)
                    out[a - n:b - n] += x[a - s:b - s]
                if e > end:
                    keep.append(clip)
            self._clips = keep
            self.n = end
        if self.fill is not None:
            self.fill(out, n, now)
        if self.keep_audio:
            self.chunks.append(out.copy())
        self.starts.append(n)
        self.stamps.append(now)
        self._note(now, now - n / self.sample_rate)

    def _ref_index(self, k: int):
        return self.starts[:k]


@contextlib.contextmanager
def _inherited_priority(enable: bool):
    """Threads created while a stream opens (the PulseAudio client's mainloop thread, which wakes PortAudio up)
    inherit the opening thread's scheduling: make that real-time for the moment (SCHED_RR), when permitted."""
    if not enable or os.environ.get("VLH_NO_RT") or not hasattr(os, "sched_setscheduler"):
        yield
        return
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(RT_PRIORITY))
    except (PermissionError, OSError):
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def enable_realtime(stream) -> bool:
    """Ask PortAudio's ALSA host to run the stream's callback thread SCHED_FIFO (PaAlsa_EnableRealtimeScheduling).
    Best effort: without the privilege the thread simply stays at normal priority."""
    try:
        import sounddevice as sd

        lib = ctypes.CDLL(sd._libname)
        fn = lib.PaAlsa_EnableRealtimeScheduling
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
        fn.restype = ctypes.c_int
        ptr = int(sd._ffi.cast("uintptr_t", stream._ptr))
        return fn(ptr, 1) == 0
    except Exception as exc:  # not the ALSA host API, or an unusual sounddevice build
        log.debug("real-time scheduling unavailable: %s", exc)
        return False
