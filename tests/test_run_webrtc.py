"""`vlh run` against the reference agent over real WebRTC: every number checked against the agent's ground truth
(harness.measure.verify compares a run folder with the agent's truth log).

Tolerances (issue 4): ear boundaries ±2 ms, agent-reported stages ±5 ms, recovered clock offset ±2 ms.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.measure.runner import RunConfig, run_measurement
from harness.measure.verify import errors
from hostload import remeasured

TEXTS = ["What time is it now?", "Book a table for two.", "How far is the airport?", "Is the museum open today?",
         "Call my sister please."]
SHORT = {"response": ["Sure thing.", "It is done.", "Twelve miles."]}  # short replies keep the test quick
EAR_TOL, STAGE_TOL = 2.0, 5.0
EAR = ["user_speech_end_ms", "first_audio_arrival_ms", "first_voiced_offset_ms"]
STAGES = ["endpointing_ms", "stt_ms", "llm_ttft_ms", "reasoning_ms", "tts_ttfb_ms", "agent_output_ms",
          "transport_ms"]


def _run(tmp_path, name, profile="typical", overrides=None, turns=4, calls=1, **kw):
    cfg = RunConfig(agent_profile=profile, agent_overrides={**SHORT, **(overrides or {})}, turns=turns,
                    texts=TEXTS, calls=calls, out_dir=tmp_path / name, report=False, progress=False, **kw)
    return run_measurement(cfg)


def measured(tmp_path, name, check, **kw):
    """Run and check, once more if the host visibly disturbed a failing run (as the loopback tests do)."""
    return remeasured(lambda n: _run(tmp_path, n, **kw), check, name)


def _turns(out) -> pd.DataFrame:
    return pd.read_parquet(out / "turns.parquet")


def _ordering_anomalies(df) -> list[str]:
    """Anomalies about the agent's instants (impossible orderings, clock); the harness-health notes about its own
    CPU starvation are information, checked by the accuracy assertions instead."""
    return [a for cell in df["anomalies"].fillna("") for a in cell.split(";") if a and "harness" not in a]


def _check_errors(out, n_turns):
    err = errors(out)
    assert len(err) == n_turns, f"{len(err)} of {n_turns} turns matched the truth"
    for col in EAR:
        worst = err[col].abs().max()
        assert worst <= EAR_TOL, f"{col}: worst error {worst:.2f} ms\n{err[col].round(2).tolist()}"
    for col in STAGES:
        worst = err[col].abs().max()
        assert worst <= STAGE_TOL, f"{col}: worst error {worst:.2f} ms\n{err[col].round(2).tolist()}"
    df = _turns(out)
    for spans, ttfa in zip(df["stages_json"], df["ttfa_ms"]):
        assert math.isclose(sum(s["ms"] for s in json.loads(spans)), ttfa, abs_tol=0.01)
    return err


def test_typical_profile_recovers_truth(tmp_path):
    def check(out):
        err = _check_errors(out, 10)
        df = _turns(out)
        assert (df["status"] == "ok").all()
        assert not _ordering_anomalies(df), _ordering_anomalies(df)
        assert err["llm_ttft_ms"].abs().max() <= STAGE_TOL
        assert (out / "recordings" / "call-1.wav").exists() and (out / "recordings" / "call-1.wav.json").exists()

    measured(tmp_path, "typical", check, turns=10)


def test_skewed_clock_offset_recovered(tmp_path):
    def check(out):
        err = _check_errors(out, 3)
        assert err["clock_offset_ms"].abs().max() <= 2.0
        meta = json.loads((out / "run.json").read_text())
        assert abs(meta["clock"][0]["drift_ppm"] - 100) < 60
        assert meta["clock"][0]["offset_ms"] == pytest.approx(1500, abs=10)
        assert not _ordering_anomalies(_turns(out))  # no false anomaly from the skewed clock

    measured(tmp_path, "skew", check, overrides={"clock_offset_ms": 1500, "clock_drift_ppm": 100}, turns=3)


def test_reasoning_flags_invisible_ttft(tmp_path):
    def check(out):
        _check_errors(out, 2)
        for row in _turns(out).to_dict("records"):
            assert row["provider_ttft_invisible"]
            assert row["reasoning_ms"] == pytest.approx(800, abs=STAGE_TOL)
            assert "invisible" in row["anomalies"]

    measured(tmp_path, "reasoning", check, profile="reasoning", turns=2)


def test_rtvi_only_places_stages_by_arrival(tmp_path):
    def check(out):
        err = errors(out)
        assert err["user_speech_end_ms"].abs().max() <= EAR_TOL
        assert err["first_audio_arrival_ms"].abs().max() <= EAR_TOL
        for row in _turns(out).to_dict("records"):
            assert row["status"] == "ok"
            assert row["provider_ttft_source"] == "rtvi-metrics"
            assert row["endpointing_source"] == "estimated"
            assert row["llm_ttft_source"] == "estimated"
            assert math.isclose(sum(s["ms"] for s in json.loads(row["stages_json"])), row["ttfa_ms"], abs_tol=0.01)
        assert err["llm_ttft_ms"].abs().max() <= STAGE_TOL  # from metrics.ttfb

    measured(tmp_path, "rtvi", check, overrides={"telemetry": "rtvi"}, turns=3)


def test_jitter_and_loss_go_to_the_jitter_buffer(tmp_path):
    def check(out):
        _check_errors(out, 4)
        df = _turns(out)
        assert (df["jitter_buffer_ms"] > 0).all()
        # grown from the 20 ms floor to absorb ±15 ms: judged on every packet played in the call. A turn's
        # jitter_buffer_ms is its first reply packet's own wait, which that packet's jitter draw moves by up to
        # 30 ms (seen: 18–53 ms in one call), so the median of four turns fell under 25 ms at random (19.9 once).
        play = pd.read_parquet(out / "recordings" / "call-1.playout.parquet").query("kind == 'play'")
        assert np.median(play["t_mono"] - play["arrival_mono"]) * 1e3 > 25
        assert (df["playout_stall_ms"] <= 100).all()  # loss is concealed, never a stall
        meta = json.loads((out / "recordings" / "call-1.wav.json").read_text())["meta"]["playout"]
        assert meta["conceal"] > 0

    measured(tmp_path, "jitter", check, overrides={"net_delay_ms": 40, "net_jitter_ms": 15, "net_loss": 0.02},
             turns=4, jitter_buffer="adaptive")


def test_ten_concurrent_calls_stay_within_tolerance(tmp_path):
    measured(tmp_path, "concurrent", lambda out: _check_errors(out, 20), turns=2, calls=10)


OTHER_VOICES = """name: other-voices
turns:
  - {say: "What time is it now?", engine: festival, voice: kal}
  - {say: "Book a table for two.", engine: festival, voice: slt}
  - {say: "How far is the airport?", engine: flite, voice: awb}
  - {say: "Thanks.", engine: flite, voice: rms}
"""


@pytest.mark.parametrize("agent_engine,agent_voice", [("flite", "slt"), ("festival", "kal")])
def test_other_voices_recover_truth(tmp_path, agent_engine, agent_voice):
    # issue 13 item 3: the agent replies with flite / festival, the user speaks festival (diphone, HTS) and flite
    from harness.audio.synth import sharpen, synthesize
    from harness.suite.scenario import load_scenario

    path = tmp_path / "voices.yaml"
    path.write_text(OTHER_VOICES)
    sc = load_scenario(path)

    def check(out):
        _check_errors(out, 4)
        df = _turns(out)
        assert (df["status"] == "ok").all(), df["status"].tolist()
        truth = [json.loads(line) for line in (out / "agent-truth.jsonl").read_text().splitlines()]
        (start,) = [r for r in truth if r["kind"] == "call" and r["event"] == "start"]
        assert (start["config"]["tts_engine"], start["config"]["tts_voice"]) == (agent_engine, agent_voice)
        for rec in (r for r in truth if r["kind"] == "turn"):  # the audio sent is that engine's, sample for sample
            want = sum(len(sharpen(synthesize(s, agent_voice, None, None, agent_engine))[0]) for s in rec["sentences"])
            assert rec["reply_samples"] == want, (rec["sentences"], rec["reply_samples"], want)

    measured(tmp_path, f"voices-{agent_engine}", check, scenario=sc,
             overrides={"tts_engine": agent_engine, "tts_voice": agent_voice})
