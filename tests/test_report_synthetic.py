"""harness.testing.synthetic: schema-true run folders whose sound sits where the turns table says."""

import json

import numpy as np
import pandas as pd
import pytest

from harness.audio.capture import Capture
from harness.results.schema import EVENT_COLUMNS, EXTRA_COLUMNS, RUN_KEYS, STAGES, TURN_COLUMNS
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("syn") / "r", turns=6, calls=2, seed=4, unattributed_every=2,
                    stutter_every=3, anomaly_every=5, error_every=4)


def first_loud(x: np.ndarray, start: int, thr: float = 0.01) -> int:
    idx = np.flatnonzero(np.abs(x[start:]) > thr)
    return start + int(idx[0])


def test_schema_is_exact(run_dir):
    t = pd.read_parquet(run_dir / "turns.parquet")
    assert sorted(t.columns) == sorted(TURN_COLUMNS + EXTRA_COLUMNS)  # README turn columns, nothing else
    assert sorted(pd.read_csv(run_dir / "turns.csv").columns) == sorted(t.columns)
    assert set(EVENT_COLUMNS) <= set(pd.read_parquet(run_dir / "events.parquet").columns)
    meta = json.loads((run_dir / "run.json").read_text())
    assert set(RUN_KEYS) <= set(meta)
    ok = t[t["status"] == "ok"]
    cols = [f"{s}_ms" for s in STAGES] + ["unattributed_ms", "residual_ms"]
    assert np.allclose(ok[cols].fillna(0).sum(axis=1), ok["ttfa_ms"], atol=1e-9)
    assert np.allclose(ok["gap_ms"], ok["ttfa_ms"] - ok["provider_ttft_ms"])
    assert np.allclose((ok["tts_first_audio_mono"] - ok["tts_request_mono"]) * 1e3, ok["tts_ttfb_ms"])
    assert np.allclose((ok["first_audio_playout_mono"] - ok["first_audio_arrival_mono"]) * 1e3, ok["jitter_buffer_ms"])
    assert (t["recording"] == "recordings/call-" + t["call"].astype(str) + ".wav").all()
    assert set(t["status"]) == {"ok", "error:disconnected"}


def test_recordings_hold_the_sound_where_the_table_says(run_dir):
    t = pd.read_parquet(run_dir / "turns.parquet")
    for call, g in t.groupby("call"):
        cap = Capture.read(run_dir / "recordings" / f"call-{call}.wav")
        for r in g[g["status"] == "ok"].itertuples():
            assert r.user_speech_end_mono - cap.t0_mono == pytest.approx(r.user_speech_end_s, abs=1e-9)
            us0 = cap.sample_of(r.user_speech_start_mono)
            assert abs(first_loud(cap.mic, us0 - 480) - us0) <= 48  # within 1 ms
            a0 = cap.sample_of(r.agent_audio_start_mono)
            assert abs(first_loud(cap.ear, cap.sample_of(r.user_speech_end_mono)) - a0) <= 48
            assert np.abs(cap.ear[cap.sample_of(r.user_speech_end_mono) + 48:a0 - 48]).max() < 0.01


def test_shift_moves_only_that_stage(tmp_path):
    a = pd.read_parquet(make_run(tmp_path / "a", turns=10, recordings="none", seed=1) / "turns.parquet")
    b = pd.read_parquet(make_run(tmp_path / "b", turns=10, recordings="none", seed=1,
                                 shift_ms={"tts_ttfb": 150}) / "turns.parquet")
    assert np.allclose(b["tts_ttfb_ms"] - a["tts_ttfb_ms"], 150.0)
    assert np.allclose(b["ttfa_ms"] - a["ttfa_ms"], 150.0)
    assert np.allclose(b["endpointing_ms"], a["endpointing_ms"])


def test_featured_recordings_only(tmp_path):
    d = make_run(tmp_path / "f", turns=40, calls=10, recordings="featured", seed=2)
    assert 1 <= len(list((d / "recordings").glob("call-*.wav"))) <= 5
