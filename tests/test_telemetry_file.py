"""Telemetry read from a file on the same host (harness/telemetry/file.py): vlh events at their own `t` on the host
clock (reconciled, offset 0, uncertainty 0), RTVI messages at the instant they were written (estimated)."""

from __future__ import annotations

import json

import pytest

from harness.errors import VlhError
from harness.telemetry.file import FileTelemetry


def _write(path, lines, partial: str = "") -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + partial)


HEADER = {"type": "vlh.telemetry_file", "version": 1, "call": "device-1", "clock": "host-monotonic",
          "telemetry_clock": {"offset_ms": 0.0, "drift_ppm": 0.0, "t_ref": 5.0}}


def test_vlh_events_are_host_instants_and_rtvi_is_placed_at_writing(tmp_path):
    f = tmp_path / "tel.jsonl"
    _write(f, [HEADER,
               {"type": "vlh.event", "name": "stt_final", "t": 100.25, "turn": 1, "_t_host": 100.2503},
               {"label": "rtvi-ai", "type": "bot-llm-started", "_t_host": 100.26},
               {"label": "rtvi-ai", "type": "metrics", "data": {"ttfb": [{"processor": "SimulatedSTTService#0",
                                                                           "value": 0.1}]}, "_t_host": 100.2504},
               {"type": "vlh.event", "name": "llm_request", "t": 90.0, "turn": 0, "_t_host": 90.0}],
           partial='{"type": "vlh.event", "na')  # a line still being written
    tel = FileTelemetry().load(f, t_from=99.0)
    assert tel.header["call"] == "device-1" and tel.counts["unparsed"] == 0
    fit = tel.reconcile()
    assert fit.offset_s == 0 and fit.drift == 0 and fit.uncertainty_s == 0
    ev = {e.name: e for e in tel.events if e.origin == "vlh"}
    assert set(ev) >= {"stt_final"} and "llm_request" not in ev  # written before t_from: another call
    assert ev["stt_final"].t_host == 100.25 and ev["stt_final"].source == "reconciled"
    rtvi = [e for e in tel.events if e.agent_t is None]
    assert rtvi and all(e.source == "estimated" and e.t_host == e.arrival for e in rtvi)
    assert [d.stage for d in tel.durations] == ["stt"]
    assert tel.anomalies == []


def test_a_skewed_agent_clock_is_flagged(tmp_path):
    f = tmp_path / "tel.jsonl"
    _write(f, [dict(HEADER, clock="injected-skew"),
               {"type": "vlh.event", "name": "stt_final", "t": 1600.0, "turn": 1, "_t_host": 100.0}])
    tel = FileTelemetry().load(f)
    tel.reconcile()
    assert len(tel.anomalies) == 1 and "injected-skew" in tel.anomalies[0] and "no ping/pong" in tel.anomalies[0]


def test_a_missing_file_names_it_and_the_fix(tmp_path):
    with pytest.raises(VlhError, match=r"telemetry file .*nope.jsonl does not exist; the agent must write it "
                                       r"\(`vlh agent … --telemetry-file FILE`\)"):
        FileTelemetry().load(tmp_path / "nope.jsonl")


def test_concurrent_calls_in_one_file_are_read_apart_by_their_call_tag(tmp_path):
    f = tmp_path / "tel.jsonl"
    lines = [dict(HEADER, call="MZa"), dict(HEADER, call="MZb", clock="injected-skew")]
    for k, call in enumerate(["MZa", "MZb", "MZa", "MZb"]):  # interleaved, as concurrent calls write them
        lines.append({"type": "vlh.event", "name": "stt_final", "t": 100.0 + k, "turn": 1 + k // 2,
                      "_t_host": 100.0 + k, "_call": call})
    _write(f, lines)
    a = FileTelemetry().load(f, call="MZa")
    a.reconcile()
    assert [e.t_host for e in a.events if e.origin == "vlh"] == [100.0, 102.0] and a.header["call"] == "MZa"
    b = FileTelemetry().load(f, call="MZb")
    b.reconcile()
    assert [e.t_host for e in b.events if e.origin == "vlh"] == [101.0, 103.0] and b.header["clock"] == "injected-skew"
    assert len([e for e in FileTelemetry().load(f).events if e.origin == "vlh"]) == 4  # no call given: every line
