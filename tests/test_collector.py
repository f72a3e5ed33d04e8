"""TelemetryLog: RTVI messages placed on the host clock with an honest uncertainty (issue #14)."""

import json

import pytest

from harness.telemetry.clock import PingSample
from harness.telemetry.collector import ARRIVAL_STAMP_S, TelemetryLog


def _rtvi(kind: str, **data) -> str:
    return json.dumps({"label": "rtvi-ai", "type": kind, "data": data})


def test_arrival_only_events_without_a_clock_fit_carry_the_arrival_stamps_uncertainty():
    tel = TelemetryLog()
    tel.feed(_rtvi("bot-llm-started"), 10.000)
    tel.feed(_rtvi("bot-llm-text", text="Sure"), 10.3)
    assert tel.reconcile() is None
    for ev in tel.events:
        assert ev.source == "estimated" and ev.t_host == ev.arrival
        assert ev.uncertainty_s == pytest.approx(ARRIVAL_STAMP_S)


def test_arrival_only_events_with_a_clock_fit_add_the_one_way_delay():
    tel = TelemetryLog()
    # four exchanges, 6 ms round trip, agent clock 2 s ahead
    for k in range(4):
        t0 = 1.0 + k
        tel.pings.append(PingSample(t0, t0 + 2.003, t0 + 2.003, t0 + 0.006))
    tel.feed(_rtvi("user-stopped-speaking"), 5.0)
    fit = tel.reconcile()
    ev = tel.events[0]
    assert fit.one_way_s == pytest.approx(0.003)
    assert ev.t_host == pytest.approx(5.0 - 0.003)
    assert ev.uncertainty_s == pytest.approx(0.003 + ARRIVAL_STAMP_S)
