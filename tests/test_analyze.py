"""`vlh analyze` end to end: real espeak conversations written to WAV, every bad input → one line, exit 2."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.audio.wavio import write_wav
from harness.cli import main

SR = 48000
EXCHANGES = [("I would like to book a table for two", "Sure for what day"),
             ("Tomorrow evening around seven", "Seven works for us"),
             ("Yes thank you very much", None)]
GAPS = [0.09, 2.5, 1.0]


@pytest.fixture(scope="module")
def rec(tmp_path_factory, request):
    from harness.audio.synth import build_conversation

    x, truth = build_conversation(EXCHANGES, gaps_s=GAPS, noise_db=40.0, comfort_noise_db=45.0, seed=2)
    d = tmp_path_factory.mktemp("rec")
    path = write_wav(d / "rec.wav", x, SR)
    return path, x, truth


def vlh(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_shape_and_values_match_truth(capsys, rec):
    path, _, truth = rec
    code, out, err = vlh(capsys, "analyze", path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sample_rate"] == 48000
    assert len(doc["turns"]) == 3
    for t, tr in zip(doc["turns"], truth):
        assert list(t)[:3] == ["user_speech_end_s", "agent_audio_start_s", "gap_ms"]
        assert abs(t["user_speech_end_s"] - tr["user_end"] / SR) <= 0.003
        if tr["agent_start"] is None:
            assert t["agent_audio_start_s"] is None and t["gap_ms"] is None and t["status"] == "no_response"
        else:
            assert abs(t["agent_audio_start_s"] - tr["agent_start"] / SR) <= 0.003
            assert t["gap_ms"] == pytest.approx((t["agent_audio_start_s"] - t["user_speech_end_s"]) * 1e3, abs=0.2)
            assert t["status"] == "ok"


def test_table(capsys, rec):
    path, _, truth = rec
    code, out, _ = vlh(capsys, "analyze", path)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["turn", "user_speech_end_s", "agent_audio_start_s", "gap_ms", "status"]
    assert lines[1].split()[0] == "1" and lines[1].split()[-1] == "ok"
    assert lines[3].split()[2:] == ["-", "-", "no_response"]
    assert "3 turns, 2 answered" in lines[-1]


def test_two_mono_files_and_swapped_channels(capsys, rec, tmp_path):
    path, x, _ = rec
    write_wav(tmp_path / "mic.wav", x[:, 0], SR)
    write_wav(tmp_path / "ear.wav", x[:, 1], SR)
    _, ref, _ = vlh(capsys, "analyze", path, "--json")
    code, out, err = vlh(capsys, "analyze", "--mic", tmp_path / "mic.wav", "--ear", tmp_path / "ear.wav", "--json")
    assert code == 0, err
    assert json.loads(out) == json.loads(ref)
    write_wav(tmp_path / "swapped.wav", x[:, ::-1], SR)
    code, out, _ = vlh(capsys, "analyze", tmp_path / "swapped.wav", "--json", "--mic-channel", "1",
                       "--ear-channel", "0")
    assert code == 0 and json.loads(out) == json.loads(ref)


def test_other_rates_are_resampled_for_the_vad(capsys, rec, tmp_path):
    from harness.audio.resample import resample

    _, x, truth = rec
    write_wav(tmp_path / "r44.wav", resample(x, SR, 44100), 44100)
    code, out, err = vlh(capsys, "analyze", tmp_path / "r44.wav", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sample_rate"] == 44100
    assert abs(doc["turns"][0]["user_speech_end_s"] - truth[0]["user_end"] / SR) <= 0.003
    assert abs(doc["turns"][0]["agent_audio_start_s"] - truth[0]["agent_start"] / SR) <= 0.003


def test_out_file_and_force(capsys, rec, tmp_path):
    path, _, _ = rec
    out = tmp_path / "res.json"
    assert vlh(capsys, "analyze", path, "--out", out)[0] == 0
    assert json.loads(out.read_text())["sample_rate"] == 48000
    code, _, err = vlh(capsys, "analyze", path, "--out", out)
    assert code == 2 and "res.json" in err and "--force" in err
    assert vlh(capsys, "analyze", path, "--out", out, "--force")[0] == 0


def _raw_wav(tag, channels, sr, bits, payload):
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, sr, sr * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _make_bad(kind, tmp_path, rec):
    path, x, _ = rec
    p = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return [tmp_path / "missing.wav"], "no such file"
    if kind == "not_wav":
        p.write_text("this is not audio\n")
        return [p], "not a WAV"
    if kind == "empty":
        p.write_bytes(b"")
        return [p], "empty"
    if kind == "truncated":
        p.write_bytes(path.read_bytes()[:30])
        return [p], "truncated"
    if kind == "8bit":
        p.write_bytes(_raw_wav(1, 2, 8000, 8, b"\x80" * 2000))
        return [p], "8-bit"
    if kind == "exotic":
        p.write_bytes(_raw_wav(6, 2, 8000, 8, b"\x55" * 2000))
        return [p], "A-law"
    if kind == "mono":
        write_wav(p, x[:, 0], SR)
        return [p], "mono file"
    if kind == "channel_range":
        return [path, "--ear-channel", "5"], "--ear-channel 5 does not exist"
    if kind == "same_channel":
        return [path, "--ear-channel", "0"], "both 0"
    if kind == "both_inputs":
        return [path, "--mic", path], "not both"
    if kind == "no_input":
        return [], "give a stereo RECORDING"
    if kind == "only_mic":
        return ["--mic", path], "both --mic"
    if kind == "stereo_as_mic":
        return ["--mic", path, "--ear", path], "needs a mono file"
    if kind == "low_rate":
        write_wav(p, np.zeros((4000, 2)), 4000)
        return [p], "too low"
    if kind == "silence":
        write_wav(p, np.zeros((SR * 3, 2)), SR)
        return [p], "no user speech found"
    if kind == "noise_only":
        write_wav(p, np.random.default_rng(0).standard_normal((SR * 3, 2)) * 0.01, SR)
        return [p], "no user speech found"
    if kind == "clipped":
        y = x.copy()
        y[SR : SR + 2000, 0] *= 8.0
        write_wav(p, y, SR)
        return [p], "clipped"
    if kind == "negative_pause":
        return [path, "--min-pause-ms", "-5"], "must not be negative"
    raise AssertionError(kind)


BAD = ["missing", "not_wav", "empty", "truncated", "8bit", "exotic", "mono", "channel_range", "same_channel",
       "both_inputs", "no_input", "only_mic", "stereo_as_mic", "low_rate", "silence", "noise_only", "clipped",
       "negative_pause"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_is_one_line_exit_2(capsys, rec, tmp_path, kind):
    argv, match = _make_bad(kind, tmp_path, rec)
    code, out, err = vlh(capsys, "analyze", *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vlh: error: ") and match in lines[0]
    assert "Traceback" not in err
    files = [a for a in argv if isinstance(a, Path)]
    if files and kind not in ("both_inputs", "no_input", "only_mic", "negative_pause"):  # option errors
        assert str(files[0]) in lines[0]  # names the file


def test_clipping_can_be_allowed(capsys, rec, tmp_path):
    argv, _ = _make_bad("clipped", tmp_path, rec)
    code, out, err = vlh(capsys, "analyze", *argv, "--allow-clipping", "--json")
    assert code == 0, err
    assert len(json.loads(out)["turns"]) == 3


def test_silent_ear_is_a_warning_not_an_error(capsys, rec, tmp_path):
    _, x, _ = rec
    y = x.copy()
    y[:, 1] = 0
    write_wav(tmp_path / "q.wav", y, SR)
    code, out, err = vlh(capsys, "analyze", tmp_path / "q.wav", "--json")
    assert code == 0
    assert "warning" in err and "silent" in err
    assert {t["status"] for t in json.loads(out)["turns"]} == {"no_response"}


def test_console_script_prints_no_traceback(tmp_path):
    vlh_bin = Path(sys.executable).with_name("vlh")
    p = tmp_path / "x.wav"
    p.write_text("nope")
    r = subprocess.run([str(vlh_bin), "analyze", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("vlh: error: ") and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "harness", "analyze", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--mic-channel" in r.stdout
