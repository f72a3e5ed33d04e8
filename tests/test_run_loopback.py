"""`vlh run --transport loopback`: the reference agent on real PulseAudio null sinks (its own process, sounddevice
callback streams), measured through the loopback transport and checked against the agent's ground truth.

Truth (harness.measure.verify.errors): the agent's first voiced sample handed to the ear device (its truth log, on its output
stream's clock) minus the end of the user's speech as the harness wrote it (its own output stream's clock).
Tolerances (issue 6): ear TTFA ±3 ms, stage attribution ±5 ms; WebRTC and loopback agree on the agent-internal stages
within 5 ms (each run's error against its own agent's truth: the agent is not bit-for-bit the same twice). A run the host visibly disturbed (load, device discontinuities) is measured once more with the same
tolerances; an undisturbed run that misses fails at once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest_loopback import loopback, loopback_calibration  # noqa: F401 (fixtures)
from harness.errors import VlhError
from harness.measure.runner import RunConfig, run_measurement
from harness.devices import pulse
from harness.measure.verify import errors
from hostload import disturbed, remeasured

TEXTS = ["What time is it now?", "Book a table for two.", "How far is the airport?", "Is the museum open today?",
         "Call my sister please."]
SHORT = {"response": ["Sure thing.", "It is done.", "Twelve miles."]}  # short replies keep the test quick
TURNS = 10
TTFA_TOL, STAGE_TOL, AGREE_TOL = 3.0, 5.0, 5.0
EAR = ["ttfa_ms", "agent_audio_start_ms", "user_speech_end_ms"]
STAGES = ["endpointing_ms", "stt_ms", "llm_dispatch_ms", "llm_ttft_ms", "reasoning_ms", "aggregation_ms",
          "tts_ttfb_ms", "agent_output_ms", "transport_ms"]
# stages inside the agent, the same whatever carries its audio (agent_output is not: 20 ms paced frames on WebRTC,
# sound-device callback buffers on loopback)
AGENT_INTERNAL = ["stt_ms", "llm_dispatch_ms", "llm_ttft_ms", "reasoning_ms", "aggregation_ms", "tts_ttfb_ms"]
_runs: dict[str, object] = {}


def _cfg(out, transport: str, **kw) -> RunConfig:
    return RunConfig(agent_profile="typical", agent_overrides=dict(SHORT), turns=TURNS, texts=TEXTS, out_dir=out,
                     report=False, progress=False, transport=transport, **kw)


def _disturbed(out) -> str:
    why = [disturbed(out)]
    df = pd.read_parquet(out / "turns.parquet")
    glitches = int(df["underruns"].fillna(0).sum())
    if glitches:
        why.append(f"{glitches} sound-device discontinuities")
    return ", ".join(w for w in why if w)


def measured(tmp_path, name, transport, check):
    return remeasured(lambda n: run_measurement(_cfg(tmp_path / n, transport)), check, name, _disturbed)


def _check_truth(out):
    err = errors(out)
    assert len(err) == TURNS, f"{len(err)} of {TURNS} turns matched the truth"
    print(f"load {os.getloadavg()[0]:.1f}\n" + err[EAR + STAGES].round(2).to_string())
    for cols, tol in ((EAR, TTFA_TOL), (STAGES, STAGE_TOL)):
        for col in cols:
            worst = err[col].abs().max()
            assert worst <= tol, f"{col}: worst error {worst:.2f} ms (tolerance {tol} ms)\n{err[col].round(2).tolist()}"
    df = pd.read_parquet(out / "turns.parquet")
    for spans, ttfa in zip(df["stages_json"], df["ttfa_ms"]):
        assert math.isclose(sum(s["ms"] for s in json.loads(spans)), ttfa, abs_tol=0.01)
    return out


def test_reference_agent_on_the_devices_matches_its_truth(tmp_path_factory,
                                                         loopback, loopback_calibration):  # noqa: F811
    out = measured(tmp_path_factory.mktemp("loopback"), "run", "loopback", _check_truth)
    _runs["loopback"] = out
    meta = json.loads((out / "run.json").read_text())
    assert meta["transport"] == "loopback" and meta["agent"] == "reference"
    assert meta["calibration"]["mic_path"]["n"] == 20 and not meta["calibration"]["made_for_this_run"]
    assert (out / "recordings" / "call-1.wav").exists() and (out / "agent-telemetry.jsonl").exists()
    df = pd.read_parquet(out / "turns.parquet")
    assert (df["status"] == "ok").all()
    assert (df["stt_source"] == "reconciled").all() and (df["transport_source"] == "reconciled").all()
    assert (df["jitter_buffer_ms"] == 0).all() and (df["codec_ms"] == 0).all()
    assert df["unattributed_ms"].abs().max() < 1e-6 and df["residual_ms"].abs().max() < 1e-6
    assert pd.read_csv(out / "turns.csv").shape[0] == TURNS


def test_webrtc_and_loopback_agree_on_the_agent_stages(tmp_path, loopback, loopback_calibration):  # noqa: F811
    lb = _runs.get("loopback") or run_measurement(_cfg(tmp_path / "loopback", "loopback"))

    def check(wr):
        a, b = pd.read_parquet(wr / "turns.parquet"), pd.read_parquet(lb / "turns.parquet")
        assert list(a["text"]) == list(b["text"])  # the same scenario
        # what each run measured, less what its agent really did (its truth): a starved agent really takes longer
        # in one run than in the other (seen: a TTS 7.45 ms slower on loopback, in its truth and in vlh alike),
        # and that is the agent, not the transport; vlh must see the same on both transports
        ea, eb = errors(wr).set_index("turn"), errors(lb).set_index("turn")
        assert list(ea.index) == list(eb.index) == list(a["turn"]), (list(ea.index), list(eb.index))
        diffs = pd.DataFrame({c: eb[c] - ea[c] for c in AGENT_INTERNAL})
        really = pd.DataFrame({c: (b[c] - a[c]).values for c in AGENT_INTERNAL}, index=diffs.index) - diffs
        print(f"load {os.getloadavg()[0]:.1f}; loopback − webrtc, vlh's error, ms:\n{diffs.round(2).to_string()}\n"
              f"the agent itself, loopback − webrtc, ms:\n{really.round(2).to_string()}")
        for c in AGENT_INTERNAL:
            worst = diffs[c].abs().max()
            assert worst <= AGREE_TOL, f"{c}: loopback and WebRTC measure differently, by up to {worst:.2f} ms"
        return wr

    wr = measured(tmp_path, "webrtc", "webrtc", check)
    from harness.report.render import write_report

    html = write_report([wr, lb], tmp_path / "compare.html").read_text()
    assert "· webrtc (baseline)" in html and "· loopback" in html


# ---- bad input: one clear line naming the device and the fix ------------------------------------------------------
def _vlh(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_more_than_one_call_is_a_clear_error(tmp_path):
    res = _vlh("run", "--transport", "loopback", "--calls", "2", "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--calls 2 with --transport loopback" in lines[0] and "--calls 1" in lines[0]


def test_no_pulseaudio_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE")}
    # a PATH with the speech synthesiser (utterances are made first) but no PulseAudio
    bin_dir = tmp_path / "no-pulse-bin"
    bin_dir.mkdir()
    (bin_dir / "espeak-ng").symlink_to(shutil.which("espeak-ng"))
    env.update(PATH=str(bin_dir), VLH_STATE_DIR=str(tmp_path / "state"))
    res = _vlh("run", "--transport", "loopback", "--turns", "1", "--out", str(tmp_path / "r"), env=env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install pulseaudio" in lines[0], lines


def test_a_sound_device_not_found_is_a_clear_error(tmp_path):
    # a state of its own: a stored calibration of other devices would add its (true) warning line
    env = dict(os.environ, VLH_STATE_DIR=str(tmp_path / "state"))
    res = _vlh("run", "--transport", "loopback", "--agent-running", "--mic-device", "no_such_out", "--ear-device",
               "no_such_in", "--turns", "1", "--out", str(tmp_path / "r"), env=env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "device 'no_such_in' not found" in lines[0] and "vlh loopback up" in lines[0], lines


def test_a_sink_at_another_rate_is_a_clear_error(tmp_path):
    sdir = tmp_path / "state"
    st = pulse.up(sdir, lease="test", reuse_running=False)
    try:
        pulse.pactl(sdir, st["server"], "unload-module", str(st["modules"]["vlh_ear"]))
        pulse.pactl(sdir, st["server"], "load-module", "module-null-sink", "sink_name=vlh_ear", "rate=44100")
        with pytest.raises(VlhError, match=r"vlh_ear runs at .*44100Hz.*needs 48000 Hz \(sample-rate mismatch\)"):
            run_measurement(RunConfig(transport="loopback", turns=1, out_dir=tmp_path / "r", state_dir=sdir,
                                      report=False, progress=False))
    finally:
        pulse.down(sdir, lease="test", force=True)
        pulse.reinit_portaudio()


def test_an_agent_that_makes_no_sound_is_a_clear_error(tmp_path, loopback, loopback_calibration):  # noqa: F811
    cfg = _cfg(tmp_path / "r", "loopback", agent_running=True, timeout_s=1.0,
               telemetry_file=tmp_path / "never-written.jsonl")
    cfg.turns = 2
    with pytest.raises(VlhError, match=r"no agent audio on the ear device 'vlh_ear_monitor' in any of 2 turns: is "
                                       r"your agent playing into 'vlh_ear', .* listen to 'vlh_mic_monitor'\?"):
        run_measurement(cfg)
    df = pd.read_parquet(tmp_path / "r" / "turns.parquet")  # the run folder is written all the same
    assert list(df["status"]) == ["no_response"] * 2
    assert all("never-written.jsonl does not exist" in a for a in df["anomalies"])
