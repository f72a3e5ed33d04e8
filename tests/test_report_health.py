"""harness.report.health: every anomaly, flag and failure is counted and listed, none dropped."""

import pytest

from harness.report import health
from harness.report.load import load_run
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load_run(make_run(tmp_path_factory.mktemp("h") / "r", turns=24, calls=3, recordings="none", seed=5,
                             anomaly_every=5, reasoning_every=4, stutter_every=6, no_response_every=7,
                             error_every=11, payload=True))


def test_counts_match_the_turns_table(run):
    t = run.turns
    a = health.anomalies(run)
    expected = sum(len([x for x in s.split(";") if x.strip()]) for s in t["anomalies"])
    assert a["count"] == expected > 0 and len(a["rows"]) == expected
    assert health.invisible_ttft(run)["count"] == int(t["provider_ttft_invisible"].sum()) > 0
    st = health.stutter(run)
    ok = t[t["status"] == "ok"]
    assert st["gaps"] == int(ok["stutter_gaps"].sum()) > 0 and st["underruns"] == int(ok["underruns"].sum())
    f = health.failures(run)
    assert f["count"] == int((t["status"] != "ok").sum()) > 0
    assert {r["status"] for r in f["rows"]} == {"no_response", "error:disconnected"}


def test_clocks_per_call_and_limits(run):
    c = health.clocks(run)
    assert [r["call"] for r in c] == [1, 2, 3]
    assert c[0]["clock_offset_ms"] == pytest.approx(1503.0) and c[0]["clock_drift_ppm"] == pytest.approx(100.0)
    assert not any(r["varies"] for r in c)
    a = health.anomalies(run, limit=1)
    assert len(a["rows"]) == 1 and a["left_off"] == a["count"] - 1


def test_telemetry_flattened(run):
    rows = dict(health.telemetry(run))
    assert rows["unparsed"] == "9" and rows["vlh"] == rows["messages"]  # 3 calls × 3, summed by the store


def test_a_negative_residual_is_an_anomaly_row_with_its_value(run):
    neg = health.negative_spans(run)
    t = run.turns
    flagged = t[t["anomalies"].str.contains("reported durations")]
    assert neg["count"] == len(flagged) > 0  # every anomaly turn of the fixture has a -12 ms residual
    assert {(r["call"], r["turn"]) for r in neg["rows"]} == set(zip(flagged["call"], flagged["turn"]))
    for r in neg["rows"]:
        assert r["name"] == "residual" and r["ms"] == pytest.approx(-12.0)
        assert "residual: -12.0 ms" in r["text"] and "not drawn as a bar" in r["text"]
