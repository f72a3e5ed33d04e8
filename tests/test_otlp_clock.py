"""Agent epoch ns → host monotonic: interpolation between (monotonic, wall) pairs, and causal bounds."""

from __future__ import annotations

import math

import pytest

from harness.telemetry.otlp_clock import SPEECH_END_SLACK_S, HostWallClock, causal_bounds

W0 = 1_780_000_000_000_000_000


def test_interpolates_a_slewing_wall_clock_to_the_ns():
    # wall gains 1 ms over 10 s against monotonic (100 ppm slew)
    clock = HostWallClock([(100.0, W0), (110.0, W0 + 10_001_000_000)])
    assert clock.to_mono(W0) == 100.0
    assert clock.to_mono(W0 + 10_001_000_000) == pytest.approx(110.0, abs=1e-9)
    assert clock.to_mono(W0 + 5_000_500_000) == pytest.approx(105.0, abs=1e-9)  # halfway in both
    assert clock.slew_s(W0 + 1) == pytest.approx(0.001, abs=1e-12)
    # outside the pairs: the nearest pair's offset
    assert clock.to_mono(W0 - 2_000_000_000) == pytest.approx(98.0, abs=1e-9)


def test_ns_resolution_kept():
    clock = HostWallClock([(12345.678901, W0)])
    assert (clock.to_mono(W0 + 1_000) - 12345.678901) == pytest.approx(1e-6, abs=1e-9)


def _ev(turn, name, t):
    return {"call": 1, "turn": turn, "name": name, "t_mono": t, "origin": "otlp:test"}


def test_causal_bounds_from_the_ear():
    rows = [{"turn": 1, "status": "ok", "user_speech_end_mono": 10.0, "first_audio_arrival_mono": 11.0},
            {"turn": 2, "status": "ok", "user_speech_end_mono": 20.0, "agent_audio_start_mono": 21.5}]
    events = [_ev(1, "stt_final", 10.3), _ev(1, "audio_first_sent", 10.95), _ev(1, "user_speech_end_detected", 10.02),
              _ev(2, "llm_request", 20.2), _ev(2, "audio_first_sent", 21.55),
              {"call": 1, "turn": 2, "name": "stt_final", "t_mono": 19.0, "origin": "rtvi:x"}]  # not OTLP: ignored
    b = causal_bounds(rows, events)
    assert b.lower_s == pytest.approx(0.05)  # turn 2: sent 50 ms after the ear onset
    assert b.upper_s == pytest.approx(0.02 + SPEECH_END_SLACK_S)
    assert (b.n_lower, b.n_upper) == (2, 5)  # every OTLP instant after the user end bounds from above
    assert b.contains(0.06) and not b.contains(0.0)
    empty = causal_bounds(rows, [])
    assert math.isinf(empty.lower_s) and empty.as_dict()["upper_ms"] is None
