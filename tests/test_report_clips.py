"""harness.report.clips: the envelope and audio clip of one turn, placed on the capture's clock."""

import base64
import io
import json
import wave

import numpy as np
import pandas as pd
import pytest

from harness.audio.capture import Capture
from harness.report.clips import envelope, recording_link, turn_clip, wav_data_uri
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("clip") / "r", turns=4, calls=1, seed=7)


def decode(uri: str) -> tuple[np.ndarray, int]:
    assert uri.startswith("data:audio/wav;base64,")
    with wave.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as w:
        sr, ch = w.getframerate(), w.getnchannels()
        a = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, ch) / 32768.0
    return a, sr


def test_envelope_is_min_max_per_bin():
    x = np.random.default_rng(0).standard_normal((10_001, 2)).astype(np.float32)
    env = envelope(x, 48000, bins=100)
    b = env["bin"]
    assert b == 101 and len(env["ch"][0][0]) == 100
    for k in (0, 57, 99):
        seg = x[k * b:(k + 1) * b, 1]
        assert env["ch"][1][0][k] == pytest.approx(seg.min(), abs=1e-4)
        assert env["ch"][1][1][k] == pytest.approx(seg.max(), abs=1e-4)


def test_clip_sits_on_the_turn_clock(run_dir, tmp_path):
    t = pd.read_parquet(run_dir / "turns.parquet")
    row = t.iloc[2].to_dict()
    clip = turn_clip(run_dir / "recordings" / "call-1.wav", row, run_dir)
    assert "error" not in clip and "note" not in clip
    audio, sr = decode(clip["audio"])
    assert sr == 16000 and audio.shape[1] == 2
    assert audio.shape[0] / sr == pytest.approx(clip["duration_s"], abs=1e-3)
    # the ear onset in the clip is at ttfa ms after user_speech_end (0 on the clip's axis)
    onset = np.flatnonzero(np.abs(audio[:, 1]) > 0.02)
    onset = onset[onset > (-clip["start_ms"]) / 1e3 * sr][0]
    assert clip["start_ms"] + onset / sr * 1e3 == pytest.approx(row["ttfa_ms"], abs=1.5)
    # and in the envelope
    ear_max = np.array(clip["ear"][1])
    k = np.flatnonzero(ear_max > 0.02)
    k = k[clip["start_ms"] + k * clip["bin_ms"] > 0][0]
    assert abs(clip["start_ms"] + (k + 0.5) * clip["bin_ms"] - row["ttfa_ms"]) <= clip["bin_ms"]
    assert clip["recording"].startswith("recordings/call-1.wav#t=")


def test_missing_recording_and_sidecar_disagreement(run_dir, tmp_path):
    row = pd.read_parquet(run_dir / "turns.parquet").iloc[0].to_dict()
    gone = turn_clip(tmp_path / "recordings" / "call-9.wav", row, tmp_path)
    assert gone["error"] == "recording recordings/call-9.wav not found"
    cap = Capture.read(run_dir / "recordings" / "call-1.wav")
    cap.t0_mono += 0.010
    p = cap.write(tmp_path / "call-1.wav")
    clip = turn_clip(p, row, tmp_path)
    assert "disagree by 10.00 ms" in clip["note"]
    (tmp_path / "call-1.wav.json").unlink()
    clip = turn_clip(p, row, tmp_path)
    assert "note" not in clip and "error" not in clip  # placed by the *_s columns


def test_recording_link_is_relative_and_quoted(tmp_path):
    rec = tmp_path / "runs" / "my run" / "recordings" / "call-1.wav"
    assert recording_link(rec, tmp_path / "reports") == "../runs/my%20run/recordings/call-1.wav"
    assert recording_link(rec, tmp_path / "runs" / "my run", 3.21) == "recordings/call-1.wav#t=3.21"


def test_wav_data_uri_keeps_levels():
    t = np.arange(4800) / 48000
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    a, sr = decode(wav_data_uri(x, 48000))
    assert sr == 16000 and len(a) == 1600
    assert np.abs(a[200:1400, 0]).max() == pytest.approx(0.5, abs=0.01) and np.abs(a[:, 1]).max() < 1e-3
    json.dumps({"u": wav_data_uri(x, 48000)})
