"""Export → receive round trip: vlh's own OTLP export (OpenTelemetry SDK + OTLP/HTTP exporter) received by vlh's
OTLP receiver reproduces every stage of turns.parquet to the microsecond, at the run's real wall-clock times."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.commands.export import parse_headers
from harness.errors import VlhError
from harness.results.schema import STAGES
from harness.telemetry.otlp_export import WallClock, build_spans, export_run
from harness.telemetry.otlp_receiver import OtlpReceiver
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "r", turns=10, calls=2, seed=3, unattributed_every=4,
                    no_response_every=5, recordings="none")


def test_round_trip_reproduces_every_stage(run_dir):
    meta = json.loads((run_dir / "run.json").read_text())
    turns = pd.read_parquet(run_dir / "turns.parquet")
    with OtlpReceiver("127.0.0.1", 0) as rec:
        n = export_run(run_dir, rec.url, {"x-api-key": "s3cret"})
        spans = rec.spans()
    assert n == len(spans) > 0
    assert rec.counts["otlp_rejected"] == 0
    clock = WallClock(meta, turns)
    by_id = {s.span_id: s for s in spans}
    calls = [s for s in spans if s.name == "vlh.call"]
    assert sorted(s.attributes["vlh.call"] for s in calls) == sorted(turns["call"].unique())
    assert len({s.trace_id for s in calls}) == len(calls)  # one trace per call
    turn_spans = {(by_id[s.parent_id].attributes["vlh.call"], s.attributes["vlh.turn"]): s
                  for s in spans if s.name == "vlh.turn"}
    assert len(turn_spans) == len(turns)
    checked = 0
    for _, r in turns.iterrows():
        ts = turn_spans[(r["call"], r["turn"])]
        assert ts.attributes["vlh.status"] == r["status"]
        # real wall-clock times: the turn starts at its first mic sample, to the ns
        assert ts.start_ns == clock.ns(r["mic_start_mono"])
        stage_spans = {s.attributes["vlh.stage"]: s for s in spans
                       if s.parent_id == ts.span_id and s.name.startswith("vlh.stage.")}
        if r["status"] != "ok":
            assert not stage_spans
            continue
        for stage in STAGES:
            v = r[f"{stage}_ms"]
            if pd.isna(v):
                assert stage not in stage_spans
                continue
            s = stage_spans[stage]
            assert abs((s.end_ns - s.start_ns) / 1e6 - v) < 1e-3, (stage, s.end_ns - s.start_ns, v)
            assert s.attributes["vlh.source"] == r[f"{stage}_source"]
            checked += 1
        # the stages and merged spans tile the turn's TTFA from the user's speech end to the first audio
        kids = sorted((s for s in spans if s.parent_id == ts.span_id), key=lambda s: s.start_ns)
        total = sum(s.attributes["vlh.ms"] for s in kids)
        assert abs(total - r["ttfa_ms"]) < 1e-3
        assert abs(kids[0].start_ns - clock.ns(r["user_speech_end_mono"])) <= 1
        ev = {name: t for name, t, _ in ts.events}
        assert ev["vlh.agent_audio_start"] == clock.ns(r["agent_audio_start_mono"])
        assert ts.attributes["vlh.ttfa_ms"] == pytest.approx(r["ttfa_ms"], abs=1e-9)
    assert checked >= 8 * 10 - 20  # most stages of the ok turns
    unatt = [s for s in spans if s.name == "vlh.unattributed"]
    assert unatt and all(s.attributes["vlh.covers"] == ["stt", "turn_detection", "llm_dispatch"] for s in unatt)


def test_export_uses_genai_names(run_dir):
    spans = build_spans(run_dir)
    ttft = [s for s in spans if s.name == "vlh.stage.llm_ttft"]
    assert ttft and all(s.attributes["gen_ai.operation.name"] == "chat" for s in ttft)
    for s in ttft:
        assert s.attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx((s.end_time - s.start_time) / 1e9,
                                                                                   abs=1e-8)
    assert all(s.resource.attributes["service.name"] == "vlh" for s in spans)


def test_wall_clock_is_the_runs_own(run_dir):
    """run.json's wall_clock pair puts the turns at the moment the run was written (here: today)."""
    meta = json.loads((run_dir / "run.json").read_text())
    turns = pd.read_parquet(run_dir / "turns.parquet")
    import time

    assert abs(meta["wall_clock"]["unix_ns"] / 1e9 - time.time()) < 600
    assert WallClock(meta, turns).exact


def test_export_to_nowhere_is_one_clear_error(run_dir, caplog):
    caplog.set_level("DEBUG")
    with pytest.raises(VlhError, match="OTLP export to http://127.0.0.1:9/v1/traces failed") as e:
        export_run(run_dir, "http://127.0.0.1:9", {"authorization": "Bearer s3cret"}, timeout_s=1.0)
    assert "s3cret" not in str(e.value) and "s3cret" not in caplog.text


def test_headers_from_environment_and_never_echoed(monkeypatch):
    monkeypatch.setenv("VLH_TEST_KEY", "s3cret")
    assert parse_headers(["x-key=$VLH_TEST_KEY", "a=env:VLH_TEST_KEY", "b=plain"]) == {
        "x-key": "s3cret", "a": "s3cret", "b": "plain"}
    with pytest.raises(VlhError) as e:
        parse_headers(["x-key=$VLH_NOT_SET_ANYWHERE"])
    with pytest.raises(VlhError) as e2:
        parse_headers(["s3cret-without-equals"])
    assert "s3cret" not in str(e.value) and "s3cret" not in str(e2.value)


def test_cli_export_otlp(run_dir, capsys, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("VLH_TEST_KEY", "s3cret")
    with OtlpReceiver("127.0.0.1", 0) as rec:
        code = main(["export", "otlp", str(run_dir), "--endpoint", f"http://user:pw@127.0.0.1:{rec.port}?token=abc",
                     "--header", "x-key=$VLH_TEST_KEY"])
        n = len(rec.spans())
    out = capsys.readouterr()
    assert code == 0 and n > 0
    assert f"vlh: {n} spans sent to http://127.0.0.1:{rec.port}?token=REDACTED" in out.out
    assert "s3cret" not in out.out + out.err and "pw@" not in out.out + out.err
    assert main(["export", "otlp", str(run_dir / "nope"), "--endpoint", "http://127.0.0.1:9"]) != 0
    assert "not a vlh run folder" in capsys.readouterr().err
