"""The loopback transport: a call to an agent through sound devices, both directions on the host clock.

Three callback streams (harness/devices/stamped.py), each stamped with `time.monotonic()` in its callback:
- `mic_play` (output, default `vlh_mic`): the harness's speech, scheduled at exact sample indexes — the agent's mic;
- `mic_record` (input, default `vlh_mic_monitor`): what really reached the agent's mic (the same device the agent
  records); None on real sound cards, where there is no such tap;
- `ear_record` (input, default `vlh_ear_monitor`): the agent's speaker, as the user hears it.

The capture (design.md §1) puts both channels on one axis. Both are *recordings at the sinks' monitors* (ch0:
what reached the agent's mic, including any glitch; ch1: what the user hears), each placed at its arrival instant
minus one common shift K, the typical write → recording latency of these devices (`vlh loopback calibrate`). So:
- ch1 − ch0 (TTFA) is measured on the sinks' own sample clocks (the host clock for null sinks): K cancels, and so
  does the wobble of any writer's output buffer (measured here: a writer's buffer depth settles in steps of one
  period, 12.5 ms, on a loaded machine; the samples reach the sink on time regardless);
- an instant on the capture is the instant a program typically wrote that audio: the harness's own schedule()
  times and an agent's truth log (first voiced sample written to vlh_ear) line up with it. This session's real
  mic path (write → monitor) is measured exactly from the content — the harness finds what it wrote, sample for
  sample, in the monitor — and reported with its deviation from K (`meta["mic_path"]`).
Without a monitor (real sound cards) ch0 is what the harness wrote, at its write instants.

No sample is lost or repeated silently: every stream's discontinuities (from its stamps) and PortAudio flags are in
`stats()` and in the capture's meta, and the mic path's content is checked against what was written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from harness.audio.capture import EAR, MIC, SAMPLE_RATE, Capture, Timeline
from harness.errors import VlhError
from harness.devices import pulse
from harness.devices.priority import set_nice
from harness.devices.stamped import DEFAULT_LATENCY, StampedInput, StampedOutput, StreamClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopbackDevices:
    """sounddevice names. Defaults: vlh's PulseAudio null sinks (`vlh loopback up`)."""

    mic_play: str = pulse.DEVICES.mic_play
    mic_record: str | None = pulse.DEVICES.mic_record
    ear_record: str = pulse.DEVICES.ear_record

    @property
    def pulse_managed(self) -> bool:
        names = [self.mic_play, self.ear_record] + ([self.mic_record] if self.mic_record else [])
        return any(n in pulse.PCMS for n in names)

    @classmethod
    def real(cls, mic_device: str, ear_device: str) -> "LoopbackDevices":
        """Real sound cards: play into `mic_device` (output), record `ear_device` (input); no mic monitor."""
        return cls(mic_play=mic_device, mic_record=None, ear_record=ear_device)


@dataclass
class Track:
    """One stream's samples with its clock; `time_of(i) = clock.time_of(i) - shift` (seconds)."""

    samples: np.ndarray
    clock: StreamClock
    shift: float = 0.0

    def time_of(self, i):
        return self.clock.time_of(i) - self.shift


class LoopbackTransport:
    """A call through sound devices. Implements the runner's CallTransport (harness/transports/base.py)."""

    def __init__(self, devices: LoopbackDevices | None = None, *, latency: float = DEFAULT_LATENCY,
                 calibration="auto", state_dir=None, start_timeout: float = 5.0, realtime: bool = True,
                 stall_timeout: float = 1.0, check_devices: bool = True, nice: int | None = -10):
        self.devices = devices or LoopbackDevices()
        self.latency = latency
        self.state_dir = state_dir
        self.start_timeout = start_timeout
        self.stall_timeout = stall_timeout
        self.realtime = realtime
        self.check_devices = check_devices
        self.nice = nice
        self._nice_before: int | None = None
        self._calibration_arg = calibration
        self.calibration = None
        self.sample_rate = SAMPLE_RATE
        self.out: StampedOutput | None = None
        self.mic_in: StampedInput | None = None
        self.ear_in: StampedInput | None = None
        self.telemetry = None  # sound devices carry no telemetry; `vlh run` ingests a telemetry file instead
        self.disconnected = False
        self.disconnect_reason = ""
        self._watchdog: asyncio.Task | None = None
        self._closed = False
        self.sink_latency: dict = {}  # PulseAudio's configured sink latencies (ms) at start and close

    # ---- set-up ----------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        d = self.devices
        if d.pulse_managed:
            if self.check_devices:
                pulse.ensure_ready(self.state_dir)
            pulse.activate(self.state_dir)
        if self._calibration_arg == "auto":
            from harness.transports.loopback.stored import load_matching

            self.calibration = load_matching(self.devices, self.latency, self.state_dir)
        else:
            self.calibration = self._calibration_arg
        if self.nice is not None:  # the GIL holder must not wait behind batch work (see devices/priority.py)
            self._nice_before = set_nice(self.nice)
        kw = dict(sample_rate=self.sample_rate, latency=self.latency, realtime=self.realtime)
        self.out = StampedOutput(d.mic_play, label="mic_play", **kw)
        self.ear_in = StampedInput(d.ear_record, label="ear_record", **kw)
        self.mic_in = StampedInput(d.mic_record, label="mic_record", **kw) if d.mic_record else None
        streams = [s for s in (self.mic_in, self.ear_in, self.out) if s is not None]
        try:
            for s in streams:
                s.open()
            for s in streams[:-1]:
                s.start()
            await self._wait(lambda s: len(s.stamps) > 0, streams[:-1], "delivered no audio")
            self.out.start()
            warm = int(0.1 * self.sample_rate)
            await self._wait(lambda s: len(s.stamps) > 1 and s.stamps[-1] - s.stamps[0] > 0.1 and s.n > warm,
                             [self.out], "took no audio")
        except BaseException:
            for s in streams:
                s.close()
            self._restore_nice()
            raise
        if d.pulse_managed and self.check_devices:
            self.sink_latency["start"] = await asyncio.to_thread(pulse.sink_latencies, self.state_dir)
        self._watchdog = asyncio.ensure_future(self._watch())

    connect = start  # the CallTransport name

    async def _wait(self, ok, streams, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not all(ok(s) for s in streams):
            if time.monotonic() > deadline:
                bad = [s for s in streams if not ok(s)]
                raise VlhError(f"sound device {bad[0].device!r} ({bad[0].label}) {what} within "
                               f"{self.start_timeout:.0f} s; is PulseAudio running (`vlh loopback status`)?")
            await asyncio.sleep(0.01)

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for s in (self.out, self.mic_in, self.ear_in):
                if s is None or self.disconnected:
                    continue
                last = s.stamps[-1] if s.stamps else s.started_at
                if not s.active or now - last > self.stall_timeout:
                    self.disconnected = True
                    self.disconnect_reason = (f"sound device {s.device!r} ({s.label}) stopped "
                                              f"{'running' if not s.active else 'delivering audio'}")
                    log.warning("loopback: %s", self.disconnect_reason)

    # ---- use -------------------------------------------------------------------------------------------------------
    def schedule(self, samples: np.ndarray, at: float | None = None) -> float:
        """Queue speech on the mic; returns the host instant its first sample leaves the harness (= its place on
        ch0). `at`: a host instant to start at (else as soon as possible; at once if `at` is past)."""
        if self.out is None:
            raise VlhError("loopback transport: schedule() before start()")
        idx = None
        if at is not None:
            idx = int(round((at - self.out.floor) * self.sample_rate))
        start = self.out.schedule(samples, idx)
        return self.out.live_time_of(start)

    play = schedule

    def busy_until(self) -> float:
        return self.out.live_time_of(self.out.busy_until_index())

    def ear_frames_since(self, t: float) -> list[tuple[float, float]]:
        """(instant on the capture axis, RMS) of each ear chunk from `t` on — live, for following a reply."""
        s = self.ear_in
        if s is None or not np.isfinite(s.floor):
            return []
        shift = self._typical_latency()[0]
        k = len(s.chunks)
        out = []
        while k > 0:
            k -= 1
            tk = s.live_time_of(s.starts[k]) - shift
            if tk < t:
                break
            x = s.chunks[k]
            out.append((tk, float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0))
        out.reverse()
        return out

    # ---- results ---------------------------------------------------------------------------------------------------
    def _typical_latency(self) -> tuple[float, str]:
        """The typical write → recording latency of a stream on these devices: the calibration's, else the
        nominal PortAudio latency (what it comes to on the null sinks, about 1×)."""
        cal = self.calibration
        if cal is not None:
            p = cal.mic_path or cal.ear_path
            if p is not None:
                return p.mean_ms / 1e3, "calibration"
        return self.latency, "nominal latency (not calibrated)"

    def tracks(self) -> dict[str, Track]:
        """The raw streams: `written` (what the harness wrote, at write instants), `mic_monitor` and `ear` (as
        recorded, at arrival instants, unshifted)."""
        out = {"written": Track(self.out.samples(), self.out.clock())}
        if self.mic_in is not None:
            out["mic_monitor"] = Track(self.mic_in.samples(), self.mic_in.clock())
        out["ear"] = Track(self.ear_in.samples(), self.ear_in.clock())
        return out

    def capture(self, meta: dict | None = None) -> Capture:
        """Both channels on one axis: recordings at (arrival instant − one common shift K), K being the typical
        write → recording latency (calibrated). Two consequences:
        - ch1 − ch0 differences (TTFA) are those of the sinks' own sample clocks: K cancels, and so does any
          wobble of a writer's output buffer — the capture is what a listener at the sinks heard, and when;
        - an instant on the capture is the instant a program *typically* wrote that audio; this session's own
          mic path (write → monitor, from the content) is in `meta["mic_path"]` with its deviation from K.
        Without a monitor (real cards) ch0 is what the harness wrote, at its write instants."""
        if self.out is None:
            raise VlhError("loopback transport: capture() before start()")
        tr = self.tracks()
        written = tr["written"]
        k, k_source = self._typical_latency()
        mic_path = measure_mic_path(written, self.out.clips, tr.get("mic_monitor"), guess=k,
                                    sample_rate=self.sample_rate)
        if k_source != "calibration" and mic_path["latency_ms"] is not None:
            k, k_source = mic_path["latency_ms"] / 1e3, "this session's mic path (not calibrated)"
        mic_path["deviation_ms"] = (None if mic_path["latency_ms"] is None
                                    else mic_path["latency_ms"] - k * 1e3)
        if tr.get("mic_monitor") is not None:
            mic = tr["mic_monitor"]
            mic.shift = k
        else:
            mic = written
        ear = tr["ear"]
        ear.shift = k
        t0 = min([t.time_of(0) for t in (mic, ear) if len(t.samples)] + [written.time_of(0)])
        tl = Timeline(t0, self.sample_rate, reserve_s=1.0)
        for ch, t in ((MIC, mic), (EAR, ear)):
            for a, b, _ in t.clock.pieces(len(t.samples)):
                tl.place(ch, t.time_of(a), t.samples[a:b])
        info = {"transport": "loopback", "devices": asdict(self.devices), "latency_s": self.latency,
                "mic_source": "monitor" if self.mic_in is not None else "written",
                "shift_ms": k * 1e3, "shift_source": k_source, "mic_path": mic_path,
                "calibration": self.calibration.brief() if self.calibration is not None else None,
                "sink_latency_ms": self.sink_latency, "streams": self.stats(tr),
                "disconnected": self.disconnect_reason or None}
        info.update(meta or {})
        return tl.capture(info)

    def stats(self, tracks: dict[str, Track] | None = None) -> dict:
        """Per stream: frames, PortAudio flags, discontinuities (host instants, step in ms), drift, callback
        lateness; plus totals `underruns` (output) and `overflows` (inputs)."""
        tracks = tracks or self.tracks()
        out = {"mic_play": self.out.stats(tracks["written"].clock),
               "ear_record": self.ear_in.stats(tracks["ear"].clock)}
        if self.mic_in is not None:
            out["mic_record"] = self.mic_in.stats(tracks["mic_monitor"].clock)
        ins = [out[k] for k in ("mic_record", "ear_record") if k in out]
        out["underruns"] = out["mic_play"]["gaps"]  # the mic output ran dry: the agent heard inserted silence
        out["overflows"] = sum(s["gaps"] for s in ins)  # recorded samples lost (their places stay silent)
        out["jumps_back"] = out["mic_play"]["jumps_back"] + sum(s["jumps_back"] for s in ins)
        out["flags"] = {k: out["mic_play"]["flags"][k] + sum(s["flags"][k] for s in ins)
                        for k in out["mic_play"]["flags"]}
        return out

    def glitches_between(self, t_from: float, t_to: float, stats: dict | None = None) -> list[dict]:
        """Discontinuities of any stream between two host instants (for per-turn reporting)."""
        stats = stats or self.stats()
        return [dict(d, stream=k) for k in ("mic_play", "mic_record", "ear_record") if k in stats
                for d in stats[k]["discontinuities"] if t_from <= d["t_mono"] < t_to]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except (asyncio.CancelledError, Exception):
                pass
        if self.devices.pulse_managed and self.check_devices and self.out is not None:
            self.sink_latency["close"] = await asyncio.to_thread(pulse.sink_latencies, self.state_dir)
        if self.out is not None:
            await asyncio.to_thread(self.out.stop)  # lets the buffered audio play out
            await asyncio.sleep(2 * self.latency + 0.05)  # ... and reach the recordings
        for s in (self.mic_in, self.ear_in, self.out):
            if s is not None:
                await asyncio.to_thread(s.close)
        self._restore_nice()

    def _restore_nice(self) -> None:
        if self._nice_before is not None:
            set_nice(self._nice_before)
            self._nice_before = None


# ---- the mic path, from content ----------------------------------------------------------------------------------
def measure_mic_path(written: Track, clips: list[tuple[int, int]], monitor: Track | None, *, guess: float,
                     sample_rate: int = SAMPLE_RATE, search_s: float = 0.5, probe_s: float = 0.25) -> dict:
    """Find each clip the harness wrote in the monitor recording. Per clip: the sample offset, the path latency
    (monitor arrival instant − write instant) and whether the monitor holds exactly the written samples.
    `latency_ms` is the first clip's; `shifts` lists clips whose offset differs from the first one's."""
    res = {"latency_ms": None, "latency_source": "content", "clips": [], "exact": 0, "shifts": []}
    if monitor is None:
        res["latency_source"] = "no monitor"
        return res
    w, rec = written.samples, monitor.samples
    ref = None
    for n0, length in clips:
        k = min(length, int(probe_s * sample_rate), len(w) - n0)
        x = w[n0:n0 + k]
        if k <= 0 or not np.any(x):
            continue
        t_w = written.clock.time_of(n0)
        lat = guess if ref is None else ref["latency_s"]
        m_pred = monitor.clock.index_of(t_w + lat)
        m0 = _find(rec, x, m_pred, int(search_s * sample_rate))
        if m0 is None:
            res["clips"].append({"index": n0, "found": False})
            continue
        got = rec[m0:m0 + k]
        exact = len(got) == k and np.array_equal(got, x)
        c = {"index": n0, "found": True, "offset": m0 - n0,
             "latency_s": float(monitor.clock.time_of(m0) - t_w), "exact": bool(exact),
             "max_abs_err": float(np.max(np.abs(got - x[:len(got)]))) if len(got) else None}
        res["clips"].append(c)
        res["exact"] += int(exact)
        if ref is None:
            ref = c
            res["latency_ms"] = c["latency_s"] * 1e3
        elif c["offset"] != ref["offset"]:
            res["shifts"].append({"index": n0, "t_mono": t_w, "shift_ms": (c["latency_s"] - ref["latency_s"]) * 1e3,
                                  "samples": c["offset"] - ref["offset"]})
    for c in res["clips"]:
        if "latency_s" in c:
            c["latency_ms"] = c.pop("latency_s") * 1e3
    return res


def _find(rec: np.ndarray, x: np.ndarray, m_pred: int, radius: int) -> int | None:
    """Index in `rec` where `x` fits best (normalised cross-correlation) within ±radius of m_pred."""
    from scipy.signal import correlate

    lo = max(0, m_pred - radius)
    hi = min(len(rec), m_pred + radius + len(x))
    seg = rec[lo:hi].astype(np.float64)
    if len(seg) < len(x):
        return None
    xx = x.astype(np.float64)
    c = correlate(seg, xx, mode="valid", method="fft")
    ex = float(np.dot(xx, xx))
    local = correlate(seg * seg, np.ones(len(xx)), mode="valid", method="fft")
    score = np.where(local > 1e-3 * ex, c / np.sqrt(np.maximum(local, 1e-30) * ex), 0.0)
    j = int(np.argmax(score))
    if score[j] < 0.5:
        return None
    return lo + j
