"""Barge-in: vlh's interruption latency (user speech start → agent audio stops at the ear) against the truth.

Measured (harness/analysis.py `_interruption`): VAD on the captured audio — the start of the user's interrupting
speech on ch0, the end of the ear speech under way at that moment on ch1.

Truth, from two records that never look at that audio:
- the **user's speech start** is the instant the harness sent the barge-in utterance's first sample of speech (the
  crisp utterance starts voiced; `speech_sent_start_mono`);
- the **stop at the ear** is the reference agent's stop packet — its truth log names the RTP sequence number of
  the first packet without the interrupted reply's audio (`barge_in.audio_stopped_seq`; the reply is cut at a
  frame boundary, so the packet before it is reply audio to its last sample) — looked up in vlh's playout log
  (`recordings/call-1.playout.parquet`: the instant the playout emulator started playing each packet), plus Opus's
  312-sample delay (the decoded frame of packet k starts with the last 312 input samples of packet k − 1).

The two share the host clock and the playout emulator's schedule, not the detection: the VAD could put the end of
the reply anywhere on ch1 and this truth would not move. What it cannot see is the cut itself being quiet (a
reply cut in a pause between words ends earlier at the ear than its stop packet): the barge-ins here land
700/900 ms into a continuous sentence, and the check asserts the reply was audible up to the cut.

Measured here (3 runs, quiet machine): errors +4.97 and +2.40 ms, the same in every run (the cuts land on the same
audio). The margin is thin and content-dependent: offline, the same reply Opus-encoded, cut at 29 frame boundaries
and decoded, puts vlh's stop −27 … +15 ms from this truth (median +5): after a loud cut the decoder's tail (down to
near digital silence) counts as speech at the sample-level refinement; a cut inside a pause ends earlier.
"""

import warnings

import pandas as pd

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
    truth, _calls = load_truth(out / "agent-truth.jsonl")
    log = pd.read_parquet(out / "recordings" / "call-1.playout.parquet")
    played = log[log["kind"] == "play"]
    checked = 0
    for row in df[df["interruption_ms"].notna()].to_dict("records"):
        interrupted = [t for t in truth.values() if t.get("barge_in") and t["barge_in"].get("audio_stopped_sent")
                       and row["mic_start_mono"] - 0.1 <= t["barge_in"]["user_speech_start_arrival"]
                       <= row["mic_end_mono"]]
        assert len(interrupted) == 1, (row["turn"], len(interrupted))
        bi = interrupted[0]["barge_in"]
        assert bi["while"] == "playing" and not bi["audio_stopped_dropped"], bi
        # the stop packet as vlh played it: same 16-bit sequence number, the first play after it was sent
        hit = played[(played["seq16"] == bi["audio_stopped_seq"]) & (played["t_mono"] > bi["audio_stopped_sent"])]
        assert len(hit), (row["turn"], bi)
        stop = hit.iloc[0]
        prev = played[played["seq"] == stop["seq"] - 1]
        assert len(prev) == 1 and prev.iloc[0]["level"] > 0.003, "the reply was not audible up to the cut"
        ear_stop = stop["t_mono"] + 312 / 48000
        true_ms = (ear_stop - row["speech_sent_start_mono"]) * 1e3
        print(f"barge-in turn {row['turn']}: measured {row['interruption_ms']:.2f} ms, truth {true_ms:.2f} ms, "
              f"error {row['interruption_ms'] - true_ms:+.2f} ms")
        assert abs(row["interruption_ms"] - true_ms) <= 5.0, (row["turn"], row["interruption_ms"], true_ms)
        checked += 1
    assert checked == 2
