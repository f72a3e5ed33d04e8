"""Calibration of the loopback device path: how long audio takes from a write to its recording.

Each repetition is a fresh session (new streams, as a call would open them): the harness plays a chirp into
`mic_play` and — standing in for the agent — another chirp into `ear_play`; each is found by cross-correlation in
its recording (`mic_record`, `ear_record`) and its path latency is (arrival instant − write instant), both instants
from the callbacks' host stamps (harness/devices/stamped.py). 20 repetitions give mean and stdev per path.

- `mic_path`: harness write on vlh_mic → vlh_mic.monitor recording (what the agent hears, and when).
- `ear_path`: a write on vlh_ear (the agent's side) → the harness's vlh_ear.monitor recording. The loopback
  transport shifts ch1 by its mean, so ch1 sits at the instant the agent wrote the audio.
- Real cards (`mic_record=None`, no `ear_play`): one path, `mic_play` → cable → `ear_record` (mode "cable").

Stored as JSON in the state directory (`loopback-calibration.json`); the transport loads it when devices and latency
match. Disturbed sessions (a discontinuity on any stream, or an outlier) are listed and replaced by new ones.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness.devices import pulse
from harness.devices.stamped import DEFAULT_LATENCY, SAMPLE_RATE, StampedOutput
from harness.errors import VlhError
from harness.transports.loopback.call import (
    LoopbackDevices,
    LoopbackTransport,
    Track,
    _find,
)
from harness.transports.loopback.stored import Calibration, PathStats, default_path

log = logging.getLogger(__name__)

CHIRP_S = 0.05
OUTLIER_MS = 3.0  # a session further than this from the median is disturbed (left out and listed)


def chirp(seed: int, seconds: float = CHIRP_S, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A linear chirp, 300 Hz → 8 kHz, random start phase and sweep direction per seed: sharp autocorrelation,
    distinct from its neighbours, band-limited (also fits a real cable path). Peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0, f1 = (300.0, 8000.0) if rng.random() < 0.5 else (8000.0, 300.0)
    ph = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)) + rng.uniform(0, 2 * np.pi)
    x = np.sin(ph)
    ramp = int(0.001 * sr)
    x[:ramp] *= np.linspace(0, 1, ramp)
    x[-ramp:] *= np.linspace(1, 0, ramp)
    return (0.5 * x).astype(np.float32)


def locate(track: Track, x: np.ndarray, t_expect: float, radius_s: float = 0.5) -> float | None:
    """Host instant (on the track's axis) of the first sample of `x` found in `track` near `t_expect`."""
    m0 = _find(track.samples, x, track.clock.index_of(t_expect), int(radius_s * SAMPLE_RATE))
    return None if m0 is None else float(track.time_of(m0))


class _Session:
    """One measurement session: a transport plus (null sinks) a stand-in agent writing on `ear_play`."""

    def __init__(self, devices: LoopbackDevices, ear_play: str | None, latency: float, state_dir,
                 check: bool = True):
        self.tr = LoopbackTransport(devices, latency=latency, calibration=None, state_dir=state_dir,
                                    check_devices=check)
        self.agent = StampedOutput(ear_play, latency=latency, label="agent_play") if ear_play else None

    async def __aenter__(self):
        await self.tr.start()
        if self.agent is not None:
            self.agent.open()
            self.agent.start()
            t_end = time.monotonic() + self.tr.start_timeout
            while not (len(self.agent.stamps) > 1 and self.agent.stamps[-1] - self.agent.stamps[0] > 0.1):
                if time.monotonic() > t_end:
                    raise VlhError(f"sound device {self.agent.device!r} took no audio within "
                                   f"{self.tr.start_timeout:.0f} s")
                await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc):
        if self.agent is not None:
            await asyncio.to_thread(self.agent.close)
        await self.tr.close()

    def play(self, seed: int) -> tuple[float, int, int | None]:
        """Schedule a chirp on the mic (and one on the ear, 120 ms later). Returns (wait s, mic idx, ear idx)."""
        x = chirp(seed)
        n_mic = self.tr.out.schedule(x)
        n_ear = None
        if self.agent is not None:
            t_ear = self.tr.out.live_time_of(n_mic) + 0.12
            n_ear = self.agent.schedule_at(t_ear, chirp(seed + 1))
        return 0.12 + CHIRP_S + 2 * self.tr.latency + 0.15, n_mic, n_ear

    def measure(self, seed: int, n_mic: int, n_ear: int | None) -> dict:
        tr = self.tr.tracks()
        stats = self.tr.stats(tr)
        glitches = [d for k in ("mic_play", "mic_record", "ear_record") if k in stats
                    for d in stats[k]["discontinuities"]]
        res = {"mic_ms": None, "ear_ms": None, "glitches": glitches}
        w = tr["written"]
        t_mic = w.time_of(n_mic)
        guess = self.tr.latency
        if "mic_monitor" in tr:
            t = locate(tr["mic_monitor"], chirp(seed), t_mic + guess)
            res["mic_ms"] = None if t is None else (t - t_mic) * 1e3
        if self.agent is not None:
            a = Track(self.agent.samples(), self.agent.clock())
            glitches += a.clock.discontinuities
            t_ear = a.time_of(n_ear)
            t = locate(tr["ear"], chirp(seed + 1), t_ear + guess)
            res["ear_ms"] = None if t is None else (t - t_ear) * 1e3
        elif "mic_monitor" not in tr:  # cable: mic_play → ear_record
            t = locate(tr["ear"], chirp(seed), t_mic + guess, radius_s=1.0)
            res["ear_ms"] = None if t is None else (t - t_mic) * 1e3
        return res


async def calibrate(devices: LoopbackDevices | None = None, *, ear_play: str | None = "auto", reps: int = 20,
                    latency: float = DEFAULT_LATENCY, state_dir=None, save: bool = True, path=None,
                    progress=None, max_attempts: int | None = None) -> Calibration:
    """Measure the device paths over `reps` undisturbed fresh sessions; store the result (unless `save=False`).

    A session is *disturbed* — left out, reported, and replaced by another (at most `max_attempts`, default
    2 × reps, in all) — when a stream reports a discontinuity, or when its latency lies more than OUTLIER_MS from
    the median of all sessions: on a loaded machine a session now and then starts with its output buffer one
    period shallower or deeper, or with its callbacks starved so long that its clocks cannot be pinned down."""
    devices = devices or LoopbackDevices()
    if ear_play == "auto":
        ear_play = pulse.DEVICES.ear_play if devices.mic_record else None
    mode = "null-sink" if devices.mic_record else "cable"
    max_attempts = max_attempts or 2 * reps
    if devices.pulse_managed:
        others = pulse.foreign_streams(state_dir)
        if others:
            raise VlhError("calibration needs the loopback devices to itself, but " + "; ".join(others)
                           + " — stop it first (an agent would hear the calibration chirps and answer them)")
    runs: list[dict] = []
    i = 0
    while True:
        async with _Session(devices, ear_play, latency, state_dir, check=(i == 0)) as s:
            wait, n_mic, n_ear = s.play(seed=1000 + 2 * i)
            await asyncio.sleep(wait)
        r = s.measure(1000 + 2 * i, n_mic, n_ear)
        r["attempt"] = i + 1
        _check_found(r, devices, ear_play, mode)
        runs.append(r)
        i += 1
        if progress:
            progress(i, reps, r)
        good, left = _select(runs)
        if len(good) >= reps or i >= max_attempts:
            break
    if len(good) < reps:
        raise VlhError(f"calibration: only {len(good)} of {i} sessions were undisturbed (need {reps}); the machine "
                       "is too busy for real-time audio — retry when it is quieter, or lower --reps")
    good = good[:reps]
    mic = [r["mic_ms"] for r in good if r["mic_ms"] is not None]
    ear = [r["ear_ms"] for r in good if r["ear_ms"] is not None]
    cal = Calibration(devices=asdict(devices), ear_play=ear_play, latency_s=latency, mode=mode,
                      mic_path=PathStats.of(mic), ear_path=PathStats.of(ear), repetitions=reps,
                      left_out=[{"attempt": r["attempt"], "why": r["why"], "mic_ms": r["mic_ms"],
                                 "ear_ms": r["ear_ms"]} for r in left],
                      created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"), host=platform.node())
    if save:
        p = Path(path) if path else default_path(state_dir)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(cal.to_json())
    return cal


def _check_found(r: dict, devices: LoopbackDevices, ear_play: str | None, mode: str) -> None:
    if r["glitches"]:
        return
    if devices.mic_record and r["mic_ms"] is None:
        raise VlhError(f"calibration: the chirp played into {devices.mic_play!r} never reached "
                       f"{devices.mic_record!r}; are both the same sink (`vlh loopback status`)?")
    if (ear_play or mode == "cable") and r["ear_ms"] is None:
        src = ear_play or devices.mic_play
        raise VlhError(f"calibration: the chirp played into {src!r} never reached {devices.ear_record!r}"
                       + ("; is the cable connected and the input level up?" if mode == "cable" else ""))


def _select(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split sessions into undisturbed ones (in order) and disturbed ones (with the reason in r["why"])."""
    clean = [r for r in runs if not r["glitches"]]
    med = {k: float(np.median(v)) if v else None
           for k in ("mic_ms", "ear_ms") for v in [[r[k] for r in clean if r[k] is not None]]}
    good, left = [], []
    for r in runs:
        if r["glitches"]:
            r["why"] = "discontinuity: " + ", ".join(f"{d['step_ms']:+.1f} ms" for d in r["glitches"])
            left.append(r)
            continue
        off = [f"{k[:-3]} {r[k]:.2f} ms vs median {med[k]:.2f}" for k in ("mic_ms", "ear_ms")
               if r[k] is not None and med[k] is not None and abs(r[k] - med[k]) > OUTLIER_MS]
        if off and len(clean) >= 5:
            r["why"] = "outlier: " + "; ".join(off)
            left.append(r)
        else:
            r["why"] = ""
            good.append(r)
    return good, left


async def measure_drift(seconds: float = 60.0, interval: float = 5.0, devices: LoopbackDevices | None = None, *,
                        ear_play: str | None = "auto", latency: float = DEFAULT_LATENCY, state_dir=None) -> dict:
    """One long session with a chirp every `interval` s on each path: does the path latency (i.e. the
    stamps-to-samples mapping) move over time? Returns the latencies, their linear trend and each stream's drift."""
    devices = devices or LoopbackDevices()
    if ear_play == "auto":
        ear_play = pulse.DEVICES.ear_play if devices.mic_record else None
    played = []
    async with _Session(devices, ear_play, latency, state_dir) as s:
        t_start = time.monotonic()
        k = 0
        while time.monotonic() - t_start < seconds:
            _, n_mic, n_ear = s.play(seed=5000 + 2 * k)
            played.append((5000 + 2 * k, n_mic, n_ear))
            k += 1
            await asyncio.sleep(interval)
        await asyncio.sleep(0.3)
    rows = []
    for seed, n_mic, n_ear in played:
        r = s.measure(seed, n_mic, n_ear)
        rows.append({"t_s": s.tr.out.clock().time_of(n_mic) - t_start, "mic_ms": r["mic_ms"], "ear_ms": r["ear_ms"]})
    stats = s.tr.stats()
    out = {"seconds": seconds, "interval_s": interval, "rows": rows,
           "stream_drift_ppm": {k: stats[k]["drift_ppm"] for k in ("mic_play", "mic_record", "ear_record")
                                if k in stats},
           "discontinuities": {k: stats[k]["discontinuities"] for k in ("mic_play", "mic_record", "ear_record")
                               if k in stats}}
    for key in ("mic_ms", "ear_ms"):
        pts = [(r["t_s"], r[key]) for r in rows if r[key] is not None]
        if len(pts) >= 3:
            t, v = np.array(pts).T
            slope = np.polyfit(t, v, 1)[0]
            out[key.replace("_ms", "_trend_ms_per_min")] = float(slope * 60)
            out[key.replace("_ms", "_span_ms")] = float(v.max() - v.min())
    return out
