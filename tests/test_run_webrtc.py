"""`vlh run` against the reference agent over real WebRTC: every number checked against the agent's ground truth.

Tolerances (issue 4): ear boundaries ±2 ms, agent-reported stages ±5 ms, recovered clock offset ±2 ms.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.run import RunConfig, run_measurement
from truth import matched

TEXTS = ["What time is it now?", "Book a table for two.", "How far is the airport?", "Is the museum open today?",
         "Call my sister please."]
REPLIES = ["Sure thing.", "It is done.", "Twelve miles."]
SHORT = {"response": REPLIES}  # short replies keep the test quick


def _run(tmp_path, name, profile="typical", overrides=None, turns=4, calls=1, **kw):
    cfg = RunConfig(agent_profile=profile, agent_overrides={**SHORT, **(overrides or {})}, turns=turns,
                    texts=TEXTS, calls=calls, out_dir=tmp_path / name, report=False, progress=False, **kw)
    return run_measurement(cfg)


def _stage_truth(t: dict) -> dict[str, float]:
    """Stage durations (ms) from the truth log's instants."""
    pairs = {"stt": ("user_speech_end_detected", "stt_final"), "llm_dispatch": ("stt_final", "llm_request"),
             "llm_ttft": ("llm_request", "llm_first_token"),
             "reasoning": ("llm_first_token", "llm_first_visible_token"),
             "aggregation": ("llm_first_visible_token", "tts_request"),
             "tts_ttfb": ("tts_request", "tts_first_audio"), "agent_output": ("tts_first_audio", "audio_first_sent")}
    return {k: (t[b] - t[a]) * 1e3 for k, (a, b) in pairs.items()}


def _true_arrival(t: dict) -> float:
    """When the first voiced reply packet reached the harness: its real wire send (after the injected delay)."""
    return t.get("audio_first_wire") or (t["audio_first_sent"] + t["audio_first_injected_delay_ms"] / 1e3)


def _check_turns(pairs, stage_tol=5.0, ear_tol=2.0):
    assert pairs
    for row, t in pairs:
        assert row["status"] == "ok", row
        # ear level: the end of the user's speech is where the crisp utterance's last sample left the harness
        assert abs(row["user_speech_end_mono"] - row["mic_end_mono"]) * 1e3 <= ear_tol, row
        lost = t["audio_first_dropped"]  # the first voiced packet was lost on purpose: the ear hears a later one
        # the first voiced reply packet: arrival and the voiced sample's place inside it
        if not lost:
            assert abs(row["first_audio_arrival_mono"] - _true_arrival(t)) * 1e3 <= ear_tol, (row, t)
            assert abs(row["playout_ms"] - t["first_voiced_offset_samples"] / 48.0) <= ear_tol, (row, t)
        # stages the agent reports
        truth = _stage_truth(t)
        for stage in ("stt", "llm_ttft", "reasoning", "tts_ttfb", "agent_output"):
            assert abs(row[f"{stage}_ms"] - truth[stage]) <= stage_tol, (stage, row[f"{stage}_ms"], truth[stage])
        if not lost:
            true_transport = (_true_arrival(t) - t["audio_first_sent"]) * 1e3
            assert abs(row["transport_ms"] - true_transport) <= stage_tol, (row["transport_ms"], true_transport)
        # endpointing at the ear: the agent's endpoint minus the true end of speech
        true_endpointing = (t["user_speech_end_detected"] - row["mic_end_mono"]) * 1e3
        assert abs(row["endpointing_ms"] - true_endpointing) <= stage_tol
        # stages sum exactly to the ear TTFA
        spans = json.loads(row["stages_json"])
        assert math.isclose(sum(s["ms"] for s in spans), row["ttfa_ms"], abs_tol=0.01)


def test_typical_profile_recovers_truth(tmp_path):
    out = _run(tmp_path, "typical", turns=10)
    pairs = matched(out)
    assert len(pairs) == 10
    _check_turns(pairs)
    meta = json.loads((out / "run.json").read_text())
    assert meta["summary"]["status_counts"] == {"ok": 10}
    for row, t in pairs:
        assert row["provider_ttft_ms"] == pytest.approx(t["durations_ms"]["llm_ttft"], abs=5)
        assert not row["anomalies"], row["anomalies"]
    # the capture is on disk with its clock
    assert (out / "recordings" / "call-1.wav").exists() and (out / "recordings" / "call-1.wav.json").exists()


def test_skewed_clock_offset_recovered(tmp_path):
    out = _run(tmp_path, "skew", overrides={"clock_offset_ms": 1500, "clock_drift_ppm": 100}, turns=3)
    pairs = matched(out)
    _check_turns(pairs)
    meta = json.loads((out / "run.json").read_text())
    t0 = json.loads((out / "recordings" / "call-1.wav.json").read_text())["t0_mono"]
    tc = pairs[0][1]["telemetry_clock"]
    true_offset_ms = tc["offset_ms"] + tc["drift_ppm"] * 1e-6 * (t0 - tc["t_ref"]) * 1e3
    assert abs(meta["clock"][0]["offset_ms"] - true_offset_ms) <= 2.0
    assert abs(meta["clock"][0]["drift_ppm"] - 100) < 60
    for row, _ in pairs:
        assert not row["anomalies"], row["anomalies"]


def test_reasoning_flags_invisible_ttft(tmp_path):
    out = _run(tmp_path, "reasoning", profile="reasoning", turns=2)
    pairs = matched(out)
    for row, t in pairs:
        assert row["provider_ttft_invisible"]
        assert row["reasoning_ms"] == pytest.approx(800, abs=5)
        assert row["provider_ttft_ms"] == pytest.approx(_stage_truth(t)["llm_ttft"], abs=5)
        assert "invisible" in row["anomalies"]


def test_rtvi_only_places_stages_by_arrival(tmp_path):
    out = _run(tmp_path, "rtvi", overrides={"telemetry": "rtvi"}, turns=3)
    pairs = matched(out)
    for row, t in pairs:
        assert row["status"] == "ok"
        assert row["provider_ttft_source"] == "rtvi-metrics"
        assert row["provider_ttft_ms"] == pytest.approx(_stage_truth(t)["llm_ttft"], abs=5)
        assert row["endpointing_source"] == "estimated"
        assert row["llm_ttft_source"] == "estimated"
        spans = json.loads(row["stages_json"])
        assert math.isclose(sum(s["ms"] for s in spans), row["ttfa_ms"], abs_tol=0.01)
        assert abs(row["user_speech_end_mono"] - row["mic_end_mono"]) * 1e3 <= 2.0


def test_jitter_and_loss_go_to_the_jitter_buffer(tmp_path):
    out = _run(tmp_path, "jitter", overrides={"net_delay_ms": 40, "net_jitter_ms": 15, "net_loss": 0.02},
               turns=4, jitter_buffer="adaptive")
    pairs = matched(out)
    jb = [row["jitter_buffer_ms"] for row, _ in pairs if row["status"] == "ok"]
    assert np.median(jb) > 25  # grown from the 20 ms floor to absorb ±15 ms
    meta = json.loads((out / "recordings" / "call-1.wav.json").read_text())["meta"]["playout"]
    assert meta["conceal"] > 0
    _check_turns(pairs)
    for row, _ in pairs:
        assert row["playout_stall_ms"] <= 100  # loss is concealed, never a stall


def test_ten_concurrent_calls_stay_within_tolerance(tmp_path):
    out = _run(tmp_path, "concurrent", turns=2, calls=10)
    pairs = matched(out)
    assert len(pairs) == 20
    _check_turns(pairs)
