"""`vlh agent --audio-in DEV --audio-out DEV`: the reference agent on sound devices (harness/agent/device.py).

Its timing against the harness is checked end to end in test_run_loopback.py; here: what it writes on its own (the
truth log's device fields, the telemetry file on the host clock) and its bad-input lines.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np

from conftest_loopback import loopback  # noqa: F401 (fixture)
from harness.audio.synth import synthesize
from harness.measure.runner import crisp
from harness.devices import pulse
from harness.devices.stamped import StampedOutput


def _vlh(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _one_line(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_both_devices_are_needed():
    line = _one_line(_vlh("agent", "--audio-in", "vlh_mic_monitor"))
    assert "--audio-out is missing" in line and "vlh_ear" in line


def test_telemetry_file_goes_with_devices(tmp_path):
    line = _one_line(_vlh("agent", "--telemetry-file", str(tmp_path / "t.jsonl")))
    assert "--audio-in/--audio-out" in line


def test_device_not_found_names_it_and_the_fix(loopback):  # noqa: F811
    line = _one_line(_vlh("agent", "--audio-in", "no_such_mic", "--audio-out", "vlh_ear",
                          env=pulse.child_env(loopback)))
    assert "'no_such_mic' not found" in line and "vlh_mic_monitor" in line and "vlh loopback up" in line


def test_devices_not_up_is_a_clear_error(tmp_path):
    env = pulse.child_env(tmp_path / "nothing-here")
    env["VLH_STATE_DIR"] = str(tmp_path / "nothing-here")
    line = _one_line(_vlh("agent", "--audio-in", "vlh_mic_monitor", "--audio-out", "vlh_ear", env=env))
    assert "not up" in line and "vlh loopback up" in line


def test_one_turn_truth_and_telemetry_on_the_host_clock(tmp_path, loopback):  # noqa: F811
    """Speak one utterance into vlh_mic: the agent's truth log holds the device fields, its first voiced sample
    lies after the user's speech, and its telemetry file carries the same instants (host clock)."""
    truth, tel, ready = tmp_path / "truth.jsonl", tmp_path / "tel.jsonl", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "agent", "--audio-in", "vlh_mic_monitor",
                             "--audio-out", "vlh_ear", "--truth-log", str(truth), "--telemetry-file", str(tel),
                             "--ready-file", str(ready), "--response", "Sure thing."],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pulse.child_env(loopback))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the agent did not get ready"
            time.sleep(0.05)
        pulse.activate(loopback)
        out = StampedOutput("vlh_mic", label="user")
        out.open()
        out.start()
        time.sleep(0.3)
        speech = crisp(synthesize("What time is it now?"))
        n = out.schedule_at(time.monotonic() + 0.1, speech)
        time.sleep(0.1 + len(speech) / 48000 + 2.5)
        t_end = out.clock().time_of(n + len(speech))
        out.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    recs = [json.loads(x) for x in truth.read_text().splitlines()]
    turns = [r for r in recs if r["kind"] == "turn"]
    assert [r["event"] for r in recs if r["kind"] == "call"] == ["start", "end"]
    assert len(turns) == 1 and turns[0]["status"] == "ok", turns
    t = turns[0]
    assert t["transport"] == "device" and t["audio_in"] == "vlh_mic_monitor" and t["audio_out"] == "vlh_ear"
    # the agent heard the user's last sample one mic path (≈ 50 ms on the null sinks) after the harness wrote it
    assert 0.0 < t["user_speech_end_heard"] - t_end < 0.2
    assert t["audio_first_sent"] > t["tts_first_audio"] > t["user_speech_end_detected"] > t_end
    assert abs(t["audio_first_callback"] - t["audio_first_sent"]) < 0.05  # raw stamp: late, never by much
    assert isinstance(t["audio_first_sent_index"], int)
    lines = [json.loads(x) for x in tel.read_text().splitlines()]
    assert lines[0]["type"] == "vlh.telemetry_file" and lines[0]["clock"] == "host-monotonic"
    events = {m["name"]: m["t"] for m in lines[1:] if m.get("type") == "vlh.event"}
    for name in ("user_speech_end_detected", "stt_final", "llm_first_token", "tts_first_audio", "audio_first_sent"):
        assert events[name] == t[name], name  # the telemetry is the truth, on the same clock
    assert all(isinstance(m["_t_host"], float) for m in lines[1:])
    assert not np.isnan(t["durations_ms"]["tts_ttfb"])
