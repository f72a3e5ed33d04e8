"""Clock reconciliation recovers an injected offset and drift from ping/pong stamps with noisy delays."""

import numpy as np
import pytest

from harness.telemetry.clock import PingSample, fit_clock


def _samples(offset_s, drift, n=150, span=30.0, seed=0, base_owd=0.0008, spikes=0.2):
    rng = np.random.default_rng(seed)
    out = []
    t_start = 1000.0
    agent = lambda t: t + offset_s + drift * (t - t_start)  # noqa: E731
    for i in range(n):
        t0 = t_start + span * i / n
        up = base_owd + rng.exponential(0.0005) + (rng.random() < spikes) * rng.uniform(0.005, 0.05)
        proc = rng.uniform(0.0001, 0.001)
        down = base_owd + rng.exponential(0.0005) + (rng.random() < spikes) * rng.uniform(0.005, 0.05)
        t1 = agent(t0 + up)
        t2 = agent(t0 + up + proc)
        t3 = t0 + up + proc + down
        out.append(PingSample(t0, t1, t2, t3))
    return out, t_start


@pytest.mark.parametrize("offset_ms,drift_ppm", [(0, 0), (1500, 100), (-5000, -200), (5000, 200)])
def test_recovers_offset_and_drift(offset_ms, drift_ppm):
    samples, t_start = _samples(offset_ms / 1e3, drift_ppm * 1e-6)
    fit = fit_clock(samples)
    assert fit is not None
    for t in (t_start, t_start + 15, t_start + 30):
        true = offset_ms / 1e3 + drift_ppm * 1e-6 * (t - t_start)
        assert abs(fit.offset_at(t) - true) < 0.5e-3, (t, fit.offset_at(t), true)
    assert abs(fit.drift * 1e6 - drift_ppm) < 20
    # the stated uncertainty covers the real error
    assert abs(fit.offset_at(t_start) - offset_ms / 1e3) <= fit.uncertainty_s


def test_to_host_inverts_agent_clock():
    samples, t_start = _samples(1.5, 100e-6)
    fit = fit_clock(samples)
    for t in (t_start + 1, t_start + 20):
        agent_t = t + 1.5 + 100e-6 * (t - t_start)
        assert abs(fit.to_host(agent_t) - t) < 0.5e-3


def test_asymmetric_spikes_do_not_bias_min_rtt_fit():
    # 60 % of exchanges have a 20–40 ms delay on the uplink only: a mean-of-offsets would be off by ~9 ms
    samples, t_start = _samples(0.25, 0.0, spikes=0.0)
    rng = np.random.default_rng(3)
    skewed = []
    for s in samples:
        if rng.random() < 0.6:
            d = rng.uniform(0.02, 0.04)
            s = PingSample(s.t0, s.t1 + d, s.t2 + d, s.t3 + d)
        skewed.append(s)
    naive = np.mean([s.offset for s in skewed])
    assert abs(naive - 0.25) > 0.005  # the trap is real
    fit = fit_clock(skewed)
    assert abs(fit.offset_at(t_start) - 0.25) < 0.5e-3


def test_few_samples_fall_back_to_offset_only_and_none_gives_none():
    assert fit_clock([]) is None
    s = PingSample(10.0, 11.001, 11.0011, 10.0022)
    fit = fit_clock([s])
    assert fit.drift == 0.0
    assert abs(fit.offset_s - 1.0) < 0.002


def test_a_ping_log_fits_as_the_list_of_samples_it_replaces():
    """Issue 19.3: a call keeps its exchanges as typed columns (PingLog, 32 bytes each); the fit from them is the
    fit from the PingSample objects, bit for bit, including out-of-order and impossible (negative-RTT) exchanges."""
    from harness.telemetry.clock import PingLog

    samples, t_start = _samples(1.5, 100e-6, n=300)
    samples = samples[150:] + samples[:150] + [PingSample(1010.0, 1011.0, 1011.0, 1009.0)]  # rtt < 0: dropped
    log = PingLog(samples)
    assert len(log) == len(samples) and log[7] == samples[7] and list(log) == samples
    assert log.t0.itemsize * 4 == 32
    a, b = fit_clock(samples), fit_clock(log)
    assert a == b and b.n_samples == 300
    assert b.offset_at(t_start) == pytest.approx(1.5, abs=b.uncertainty_s) and b.drift == pytest.approx(100e-6, abs=5e-6)
    assert fit_clock(PingLog()) is None
