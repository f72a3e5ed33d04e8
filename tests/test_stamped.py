"""StreamClock: from callback stamps to a host time per sample (synthetic stamps with known truth), and the stamped
streams on real devices."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest_loopback import loopback  # noqa: F401 (fixture)
from harness.errors import VlhError
from harness.devices.stamped import StampedInput, StampedOutput, StreamClock

SR = 48000


def synth(seconds=8.0, frames=600, offset=100.0, drift=0.0, late_ms=3.0, step_at=None, step_s=0.0, seed=0,
          kind="input"):
    """Callback stamps of a stream whose sample i truly sits at offset + i/SR·(1+drift) (+step_s after step_at)."""
    rng = np.random.default_rng(seed)
    n_chunks = int(seconds * SR / frames)
    starts = np.arange(n_chunks) * frames
    ref = starts + frames if kind == "input" else starts
    true = offset + ref / SR * (1 + drift)
    if step_at is not None:
        true = true + np.where(starts >= step_at, step_s, 0.0)
    late = rng.exponential(late_ms / 1e3 / 3, n_chunks)
    spikes = rng.random(n_chunks) < 0.05
    late[spikes] += rng.uniform(0, late_ms / 1e3, spikes.sum())
    return true + late, ref, starts


def test_offset_recovered_within_a_tenth_of_a_millisecond():
    t, ref, starts = synth()
    c = StreamClock.fit(t, ref, starts, SR)
    assert c.discontinuities == []
    assert abs(c.time_of(0) - 100.0) < 1e-4
    assert abs(c.time_of(SR * 5) - 105.0) < 1e-4
    assert c.index_of(c.time_of(123456)) == 123456


def test_lost_samples_make_a_discontinuity_at_the_right_place():
    # 30 ms of samples lost at index 192000 (4 s): from there on each sample sits 30 ms later
    t, ref, starts = synth(step_at=192000, step_s=0.030)
    c = StreamClock.fit(t, ref, starts, SR)
    assert len(c.discontinuities) == 1
    d = c.discontinuities[0]
    assert d["index"] == 192000
    assert d["step_ms"] == pytest.approx(30.0, abs=0.2)
    assert abs(c.time_of(192000 + SR) - (100.0 + (192000 + SR) / SR + 0.030)) < 2e-4
    assert abs(c.time_of(1000) - (100.0 + 1000 / SR)) < 2e-4


def test_repeated_samples_step_down():
    t, ref, starts = synth(step_at=96000, step_s=-0.0125, kind="output")
    c = StreamClock.fit(t, ref, starts, SR)
    assert [round(d["step_ms"], 1) for d in c.discontinuities] == [-12.5]
    assert c.discontinuities[0]["index"] == 96000


def test_a_single_late_window_is_not_a_discontinuity():
    t, ref, starts = synth()
    k = (t > t[0] + 3.0) & (t < t[0] + 3.4)
    t = t + np.where(k, 0.040, 0.0)  # callbacks 40 ms late for 0.4 s (a busy machine), no sample lost
    c = StreamClock.fit(t, ref, starts, SR)
    assert c.discontinuities == []
    assert c.lateness_ms["max"] > 39


def test_drift_is_fitted():
    t, ref, starts = synth(seconds=60.0, drift=80e-6)
    c = StreamClock.fit(t, ref, starts, SR)
    assert c.drift * 1e6 == pytest.approx(80.0, abs=1.0)
    assert c.discontinuities == []
    assert abs(c.time_of(SR * 55) - (100.0 + 55 * (1 + 80e-6))) < 2e-4


def test_stamped_streams_on_the_loopback_devices(loopback):  # noqa: F811
    """What StampedOutput writes arrives bit-exact in StampedInput, and the two clocks agree on when."""
    from harness.devices import pulse

    pulse.activate(loopback)
    mic = StampedInput("vlh_mic_monitor")
    out = StampedOutput("vlh_mic")
    for s in (mic, out):
        s.open()
    try:
        mic.start()
        t_end = time.monotonic() + 5
        while not mic.stamps and time.monotonic() < t_end:
            time.sleep(0.01)
        out.start()
        time.sleep(0.2)
        x = (np.random.default_rng(7).standard_normal(4800) * 0.2).astype(np.float32)
        n0 = out.schedule(x)
        time.sleep(0.5)
    finally:
        out.close()
        mic.close()
    rec = mic.samples()
    hits = [i for i in np.flatnonzero(rec == x[0]) if np.array_equal(rec[i:i + len(x)], x)]
    assert len(hits) == 1, "the written burst must appear exactly once, bit-exact, in the monitor"
    lat = mic.clock().time_of(hits[0]) - out.clock().time_of(n0)
    assert 0.0 < lat < 0.5
    assert np.array_equal(out.samples()[n0:n0 + len(x)], x)


def test_unknown_device_is_a_clear_error(loopback):  # noqa: F811
    from harness.devices import pulse

    pulse.activate(loopback)
    with pytest.raises(VlhError, match=r"sound input device 'no-such-mic' not found; input devices here: .*vlh_mic"):
        StampedInput("no-such-mic").open()
