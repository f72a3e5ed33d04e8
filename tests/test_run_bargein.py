"""Barge-in: vlh's interruption latency (user speech start → agent audio stops at the ear) against the truth.

Truth: the agent logs when it sent the first packet without reply audio (`barge_in.audio_stopped_sent`); that
packet reaches the ear after the network delay (fixed, no jitter here), the jitter buffer's delay (measured at the
call's reply onsets; its turn-to-turn spread of ~1–2 ms is part of this truth's own error) and Opus's 312-sample
delay. Passed on a quiet machine; under load, and sometimes quietly, the playout delay moves by more than the
±5 ms margin during a reply, so this truth is too coarse to gate CI: xfail (non-strict) until the agent logs the
stop packet's sequence number and the check can use vlh's own playout instant for it. The user's speech started when the
crisp utterance's first sample left the harness.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from harness.run import RunConfig, run_measurement
from harness.scenario import load_scenario
from harness.verify import load_truth
from hostload import disturbed

SCENARIO = """
name: barge-in-check
turns:
  - say: "Tell me a long story about the sea."
  - say: "Stop, wait."
    barge_in_after_ms: 700
  - say: "Tell me about boats."
  - say: "Hold on please."
    barge_in_after_ms: 900
timeout_s: 10
agent:
  profile: typical
"""
LONG = "Once upon a time there was a small boat that sailed across the wide and windy sea for many days and nights."


@pytest.mark.xfail(strict=False, reason="truth built from the call's median playout delay: see module docstring")
def test_interruption_latency_matches_truth(tmp_path):
    f = tmp_path / "bi.yaml"
    f.write_text(SCENARIO)
    sc = load_scenario(f)

    def run(name):
        return run_measurement(RunConfig(scenario=sc, agent_profile="typical",
                                         agent_overrides={"response": [LONG, "Okay.", LONG, "Okay."]},
                                         out_dir=tmp_path / name, report=False, progress=False))

    out = run("run")
    try:
        check(out)
    except AssertionError as exc:  # re-measured once only when the host visibly disturbed the first run
        why = disturbed(out)
        if not why:
            raise
        warnings.warn(f"barge-in: re-measuring once ({why}): {str(exc)[:200]}")
        check(run("again"))


def check(out):
    df = pd.read_parquet(out / "turns.parquet")
    truth, calls = load_truth(out / "agent-truth.jsonl")
    cfg = next(iter(calls.values()))["config"]
    net_ms = cfg["net_delay_ms"]
    assert cfg["net_jitter_ms"] == 0
    jb = float(np.median(df["jitter_buffer_ms"].dropna()))  # the call's playout delay (no network jitter here)
    checked = 0
    for row in df[df["interruption_ms"].notna()].to_dict("records"):
        interrupted = [t for t in truth.values() if t.get("barge_in") and t["barge_in"].get("audio_stopped_sent")
                       and row["mic_start_mono"] - 0.1 <= t["barge_in"]["user_speech_start_arrival"]
                       <= row["mic_end_mono"]]
        assert len(interrupted) == 1, (row["turn"], len(interrupted))
        stop_sent = interrupted[0]["barge_in"]["audio_stopped_sent"]
        ear_stop = stop_sent + net_ms / 1e3 + jb / 1e3 + 312 / 48000
        true_ms = (ear_stop - row["mic_start_mono"]) * 1e3
        assert abs(row["interruption_ms"] - true_ms) <= 5.0, (row["turn"], row["interruption_ms"], true_ms)
        checked += 1
    assert checked == 2
