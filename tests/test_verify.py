"""harness.measure.verify: a run folder's turns against the agent's truth log, on a hand-made folder whose errors are
known by construction (no vlh measurement involved)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.measure.verify import errors, true_arrival_span

SENT, WIRE_START, WIRE = 10.000, 10.0200, 10.0203  # the reply's first packet: handed over, send began, send returned


def _folder(tmp_path, arrival, *, wire_start=WIRE_START, wire=WIRE):
    truth = {"kind": "turn", "call": "a1", "turn": 1, "user_speech_end_detected": 9.5, "audio_first_sent": SENT,
             "audio_first_wire_start": wire_start, "audio_first_wire": wire, "audio_first_injected_delay_ms": 20.0,
             "first_voiced_offset_samples": 96}
    (tmp_path / "agent-truth.jsonl").write_text(json.dumps(truth) + "\n")
    (tmp_path / "run.json").write_text(json.dumps({"clock": []}))
    row = {"call": 1, "turn": 1, "status": "ok", "agent_call_id": "a1", "mic_start_mono": 8.0, "mic_end_mono": 9.2,
           "speech_sent_end_mono": 9.2, "mic_end_late_ms": 0.0, "user_speech_end_mono": 9.2,
           "first_audio_arrival_mono": arrival, "playout_ms": 2.0, "transport_ms": (arrival - SENT) * 1e3,
           "endpointing_ms": 300.0}
    pd.DataFrame([row]).to_parquet(tmp_path / "turns.parquet")
    return tmp_path


@pytest.mark.parametrize("arrival, want", [
    (WIRE_START + 0.0001, 0.0),        # inside the send: exact
    (WIRE + 0.0004, 0.4),              # after it returned: late by the distance to the return
    (WIRE_START - 0.0007, -0.7),       # before it began: impossible, early by the distance to the start
])
def test_arrival_is_judged_against_the_span_the_send_took(tmp_path, arrival, want):
    e = errors(_folder(tmp_path, arrival)).iloc[0]
    assert e["first_audio_arrival_ms"] == pytest.approx(want, abs=1e-6)
    assert e["transport_ms"] == pytest.approx(want, abs=1e-6)  # the same span, seen from the hand-over
    assert e["first_audio_truth_span_ms"] == pytest.approx(0.3, abs=1e-6)
    assert e["user_speech_end_ms"] == pytest.approx(0.0, abs=1e-9)


def test_a_preempted_send_widens_the_span_and_a_point_stays_a_point(tmp_path):
    # the agent was preempted for 2.5 ms inside sendto: an arrival 2.3 ms before the return stamp is inside
    e = errors(_folder(tmp_path, WIRE - 0.0023, wire_start=WIRE - 0.0025)).iloc[0]
    assert e["first_audio_arrival_ms"] == 0.0 and e["first_audio_truth_span_ms"] == pytest.approx(2.5)
    # an older truth log without the start stamp: the return stamp is the point truth
    assert true_arrival_span({"audio_first_wire": WIRE}) == (WIRE, WIRE)
    e = errors(_folder(tmp_path, WIRE - 0.0023, wire_start=None)).iloc[0]
    assert e["first_audio_arrival_ms"] == pytest.approx(-2.3)
