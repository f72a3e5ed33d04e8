"""vlh as Twilio against a real pipecat 1.14 phone bot (tests/pipecat_twilio_bot.py: FastAPIWebsocketTransport +
TwilioFrameSerializer, Silero VAD, the scripted services of tests/pipecat_bot.py), in its own process.

The check is independent of vlh's detection: from the raw message log (recordings/call-1.messages.parquet — each
message's host stamp and its 8 kHz samples) the test takes the last non-silent sample (over −60 dBFS) vlh sent in the
utterance (its message's hand-over instant + its index / 8000) and the first non-silent sample the bot sent
after it (its message's arrival + its index / 8000: pipecat paces its output in real time, so vlh's playout queue
is empty and that is when it plays). vlh's TTFA, found by its speech-boundary detector on the 48 kHz capture, must
agree within ±5 ms. A barge-in makes pipecat send `clear` (pipecat 1.14 sends no `mark`, so none is echoed).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from harness.measure.runner import RunConfig, run_measurement
from harness.suite.scenario import load_scenario
from bot_process import start_bot
from hostload import remeasured

BOT = Path(__file__).with_name("pipecat_twilio_bot.py")
LOUD = 32  # |sample| over −60 dBFS: not silent (pipecat's silence and μ-law's zero codes decode to 0)
TOL_MS = 5.0
SCENARIO = """name: pipecat-phone
timeout_s: 8
turns:
  - say: "What time do you open?"
    pause_after_ms: 500
  - say: "Can I book a table for two?"
    pause_after_ms: 300
  - say: "Stop, wait."
    barge_in_after_ms: 250
    pause_after_ms: 300
"""


def _samples(row) -> np.ndarray:
    return np.frombuffer(row["pcm16"], "<i2")


def independent_ttfa(msgs: pd.DataFrame, sent_from: float, sent_to: float) -> float:
    """ms from the last loud sample vlh sent in [sent_from, sent_to] to the first loud sample the bot sent after."""
    out = msgs[(msgs["dir"] == "out") & (msgs["event"] == "media") & (msgs["t_mono"] >= sent_from)
               & (msgs["t_mono"] <= sent_to)]
    last = None
    for _, r in out.iterrows():
        loud = np.flatnonzero(np.abs(_samples(r).astype(np.int32)) > LOUD)
        if len(loud):
            last = r["t_mono"] + (loud[-1] + 1) / 8000  # the instant after the last loud sample
    assert last is not None
    inb = msgs[(msgs["dir"] == "in") & (msgs["event"] == "media") & (msgs["t_mono"] > last)]
    for _, r in inb.iterrows():
        loud = np.flatnonzero(np.abs(_samples(r).astype(np.int32)) > LOUD)
        if len(loud):
            return (r["t_mono"] + loud[0] / 8000 - last) * 1e3
    raise AssertionError("the bot sent no loud audio after the utterance")


def test_pipecat_twilio_bot(tmp_path):
    f = tmp_path / "sc.yaml"
    f.write_text(SCENARIO)
    sc = load_scenario(f)
    proc, port = start_bot(BOT, tmp_path)
    try:
        def run(name):
            return run_measurement(RunConfig(transport="ws-telephony", agent_url=f"ws://127.0.0.1:{port}/ws",
                                             scenario=sc, out_dir=tmp_path / name, report=False, progress=False))

        remeasured(run, _check, "pipecat-phone")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # uvicorn waits for open sockets to close: do not wait for it
            proc.kill()
            proc.wait(5)


def _check(out: Path):
    df = pd.read_parquet(out / "turns.parquet").sort_values("turn")
    msgs = pd.read_parquet(out / "recordings" / "call-1.messages.parquet")
    rows = df.to_dict("records")
    assert [r["status"] for r in rows[:2]] == ["ok", "ok"], df[["turn", "status", "error"]]
    lines = []
    for r in rows[:2]:
        # the utterance's messages: from its first sample's chunk to its last (+ one chunk)
        mine = independent_ttfa(msgs, r["speech_sent_start_mono"] - 0.02, r["speech_sent_end_mono"] + 0.02)
        lines.append(f"turn {r['turn']}: vlh {r['ttfa_ms']:.1f} ms, from the raw messages {mine:.1f} ms")
        assert abs(r["ttfa_ms"] - mine) <= TOL_MS, lines
    # the barge-in: pipecat interrupts its reply with `clear`, after the interrupting speech started
    barge = rows[2]
    clears = msgs[(msgs["dir"] == "in") & (msgs["event"] == "clear")]
    assert len(clears) >= 1 and (clears["t_mono"] > barge["speech_sent_start_mono"]).any(), clears
    meta = json.loads((out / "recordings" / "call-1.wav.json").read_text())["meta"]
    assert meta["clears"] == len(clears) and meta["provider"] == "twilio"
    assert not (msgs["event"] == "mark").any()  # pipecat 1.14 sends no mark: none echoed
    print("\n".join(lines))
    return lines
