"""Calibration of the loopback device path: 20 fresh sessions through the real null sinks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest_loopback import loopback, loopback_calibration  # noqa: F401 (fixtures)
from harness.cli import main
from harness.errors import VlhError
from harness.transports.loopback import calibrate, stored
from harness.transports.loopback.call import LoopbackDevices


def test_calibration_stdev_within_a_millisecond(loopback, loopback_calibration):  # noqa: F811
    cal = loopback_calibration
    print("calibration:", json.dumps(cal.brief()), "left out:", cal.left_out)
    for p in (cal.mic_path, cal.ear_path):
        assert p.n == 20 and len(p.values_ms) == 20
        assert p.stdev_ms <= 1.0
        assert 0.0 < p.mean_ms < 500.0
        assert p.stdev_ms == pytest.approx(float(np.std(p.values_ms, ddof=1)))
    # the two paths are the same kind (a write on a null sink → its monitor): they must agree
    assert abs(cal.mic_path.mean_ms - cal.ear_path.mean_ms) <= 1.0
    assert len(cal.left_out) <= 20  # at most max_attempts (2 × reps) sessions in all


def test_calibration_is_stored_and_matched(loopback, loopback_calibration):  # noqa: F811
    cal = stored.load(state_dir=loopback)
    assert cal is not None and cal.mic_path.values_ms == loopback_calibration.mic_path.values_ms
    assert stored.default_path(loopback).name == "loopback-calibration.json"
    assert stored.load_matching(LoopbackDevices(), 0.05, loopback) is not None
    assert stored.load_matching(LoopbackDevices(), 0.1, loopback) is None  # other latency: not this one
    assert stored.load_matching(LoopbackDevices.real("hw:1", "hw:2"), 0.05, loopback) is None


def test_a_damaged_calibration_file_is_a_clear_error(tmp_path):
    p = tmp_path / "loopback-calibration.json"
    p.write_text("{not json")
    with pytest.raises(VlhError, match=r"loopback-calibration.json: not a vlh loopback calibration .*delete it"):
        stored.load(p)


def test_chirps_are_sharp_and_distinct():
    a, b = calibrate.chirp(1), calibrate.chirp(2)
    ac = np.abs(np.correlate(a, a, "full"))
    peak = ac.argmax()
    assert peak == len(a) - 1
    side = np.concatenate([ac[:peak - 24], ac[peak + 25:]])  # beyond ±0.5 ms
    assert side.max() < 0.3 * ac[peak]
    assert np.abs(np.correlate(a, b, "full")).max() < 0.5 * ac[peak]
    assert np.abs(a).max() <= 0.5


def test_outliers_and_discontinuities_are_left_out_and_listed():
    runs = [{"mic_ms": 50.0 + 0.01 * i, "ear_ms": 50.0, "glitches": [], "attempt": i + 1} for i in range(8)]
    runs[3]["mic_ms"] = 62.5  # a session whose output buffer settled one period shallower
    runs[5]["glitches"] = [{"step_ms": 25.0}]
    good, left = calibrate._select(runs)
    assert [r["attempt"] for r in left] == [4, 6]
    assert "outlier: mic 62.50 ms" in left[0]["why"] and "discontinuity: +25.0 ms" in left[1]["why"]
    assert len(good) == 6


def test_cli_calibrate_json(loopback, capsys):  # noqa: F811
    assert main(["loopback", "calibrate", "--reps", "3", "--no-save", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cal = out["calibration"]
    assert cal["repetitions"] == 3 and cal["mic_path"]["n"] == 3 and out["saved_to"] is None
    assert cal["devices"]["mic_play"] == "vlh_mic" and cal["mode"] == "null-sink"
    from harness.devices import pulse

    assert pulse.ensure_ready(loopback), "the CLI's own lease must not take the session's devices down"


def test_cli_calibrate_bad_arguments(capsys):
    assert main(["loopback", "calibrate", "--reps", "1"]) == 2
    assert "--reps 1: need at least 2" in capsys.readouterr().err
    assert main(["loopback", "calibrate", "--mic-device", "hw:1"]) == 2
    assert "--mic-device and --ear-device go together" in capsys.readouterr().err


async def test_calibration_refuses_devices_in_use(loopback):  # noqa: F811
    import asyncio
    import subprocess

    from harness.devices import pulse

    rec = subprocess.Popen(["pacat", "-r", "-d", "vlh_mic.monitor"], stdout=subprocess.DEVNULL,
                           env=pulse.child_env(loopback))
    try:
        for _ in range(100):
            if pulse.foreign_streams(loopback):
                break
            await asyncio.sleep(0.05)
        with pytest.raises(VlhError, match=rf"pacat \(pid {rec.pid}\) records vlh_mic.monitor — stop it first"):
            await calibrate.calibrate(reps=2, state_dir=loopback, save=False)
    finally:
        rec.terminate()
        rec.wait(5)
