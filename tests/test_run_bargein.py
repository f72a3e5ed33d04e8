"""Barge-in: vlh's interruption latency (user speech start → agent audio stops at the ear) against the truth.

Measured (harness/measure/measure_call.py `_interruption`): on the capture — the start of the user's interrupting speech on
ch0, and on ch1 the agent's sound under way followed until it is no longer audible (boundaries.audible_end).

Truth, from records that never look at that audio:
- the **user's speech start** is the instant the harness sent the barge-in utterance's first sample of speech (the
  crisp utterance starts voiced; `speech_sent_start_mono`);
- the **stop at the ear** is what a listener hears: the reference agent decodes the packets it sent and logs the
  last audible sample of the interrupted reply (`barge_in.audio_last_audible_seq` and `_offset_samples`, the
  sample's index in that packet's decoded 20 ms frame, Opus's delay included; harness/agent/audible.py: 45 dB
  under the reply's loudest 10 ms, 4 kHz band) — placed at the ear by vlh's playout log
  (`recordings/call-1.playout.parquet`: the instant the playout emulator started playing that packet).

The two share the host clock and the playout emulator's schedule, not the detection: the ear channel could put the
end of the reply anywhere and this truth would not move.

The reply has pauses; the six barge-ins are timed so that the stop packet lands in a pause (the audio really
stopped at the last word, up to ~190 ms before the stop packet), inside loud speech (the decoder's tail runs up
to ≈ 15 ms past the stop packet's 312-sample mark), or the user starts inside a pause of the reply. The offline
sweep over 24 cuts per reply is tests/test_interruption_truth.py.
"""

import pandas as pd

from harness.measure.runner import RunConfig, run_measurement
from harness.suite.scenario import load_scenario
from harness.measure.verify import load_truth
from hostload import remeasured

# ms into the reply at the ear; its stop packet plays ≈ 105 ms later. Pauses of REPLY (ms into it): 310–500,
# 2570–2760: 290 and 2540 stop it in a pause; 2700 starts the user in that pause, the reply resumes and is cut
# ≈ 50 ms into the next word; the others cut it in speech.
BARGE_MS = [290, 900, 1500, 2540, 2700, 3300]
REPLY = "Well, let me see. The museum opens at nine, closes at five, and on Mondays, sadly, it is closed."
SCENARIO = "name: barge-in-check\ntimeout_s: 10\nagent:\n  profile: typical\nturns:\n" + "".join(
    f'  - say: "Tell me about the museum."\n    pause_after_ms: 400\n'
    f'  - say: "Stop, wait."\n    barge_in_after_ms: {ms}\n    pause_after_ms: 400\n' for ms in BARGE_MS)


def test_interruption_latency_matches_truth(tmp_path):
    f = tmp_path / "bi.yaml"
    f.write_text(SCENARIO)
    sc = load_scenario(f)

    def run(name):
        return run_measurement(RunConfig(scenario=sc, agent_profile="typical",
                                         agent_overrides={"response": [REPLY, "Okay."]},
                                         out_dir=tmp_path / name, report=False, progress=False))

    remeasured(run, check, "barge-in")


def check(out):
    """Every barge-in the agent logged while playing is judged against its truth. espeak-ng's timing varies
    between syntheses (a fresh cache — as on CI — can move the reply's pauses by tens of ms), so a barge-in meant
    to start in a pause may start after the agent's audio had already stopped for good (truth < 0: the user heard
    the agent stop before speaking). vlh must then say so (no interruption_ms, the "not speaking" anomaly), and
    otherwise measure it within ±5 ms; at least four of the six must be measured."""
    df = pd.read_parquet(out / "turns.parquet")
    truth, _calls = load_truth(out / "agent-truth.jsonl")
    log = pd.read_parquet(out / "recordings" / "call-1.playout.parquet")
    played = log[log["kind"] == "play"]
    errors, vs_packet, silent_before = [], [], []
    rows = df.to_dict("records")
    for t in truth.values():
        bi = t.get("barge_in")
        if not bi or not bi.get("audio_stopped_sent"):
            continue
        assert bi["while"] == "playing" and not bi["audio_stopped_dropped"], bi
        assert bi["audio_last_audible_seq"] is not None, bi
        mine = [r for r in rows if r["mic_start_mono"] - 0.1 <= bi["user_speech_start_arrival"] <= r["mic_end_mono"]]
        assert len(mine) == 1, (t["turn"], len(mine))
        row = mine[0]
        # the stop packet as vlh played it: same 16-bit sequence number, the first play after it was sent
        hit = played[(played["seq16"] == bi["audio_stopped_seq"]) & (played["t_mono"] > bi["audio_stopped_sent"])]
        assert len(hit), (row["turn"], bi)
        stop = hit.iloc[0]
        back = (bi["audio_stopped_seq"] - bi["audio_last_audible_seq"] + 0x8000) % 0x10000 - 0x8000
        last = played[played["seq"] == stop["seq"] - back]
        assert len(last) == 1, ("the last audible packet was not played", row["turn"], bi)
        ear_stop = last.iloc[0]["t_mono"] + (bi["audio_last_audible_offset_samples"] + 1) / 48000
        true_ms = (ear_stop - row["speech_sent_start_mono"]) * 1e3
        if pd.isna(row["interruption_ms"]):
            print(f"barge-in turn {row['turn']}: not measured, truth {true_ms:.2f} ms")
            assert true_ms < 5.0, ("a barge-in while the agent was audible was not measured", row["turn"], true_ms,
                                   row["anomalies"])
            assert "not speaking" in (row["anomalies"] or ""), row["anomalies"]
            silent_before.append(true_ms)
            continue
        err = row["interruption_ms"] - true_ms
        vs_packet.append((ear_stop - stop["t_mono"] - 312 / 48000) * 1e3)
        print(f"barge-in turn {row['turn']}: measured {row['interruption_ms']:.2f} ms, truth {true_ms:.2f} ms, "
              f"error {err:+.2f} ms (last audible − stop packet {vs_packet[-1]:+.1f} ms)")
        errors.append(err)
    assert len(errors) + len(silent_before) == len(BARGE_MS), (len(errors), silent_before,
                                                               df[["turn", "interruption_ms", "anomalies"]])
    assert len(errors) >= 4, (errors, silent_before)
    assert max(abs(e) for e in errors) <= 5.0, errors
    # the barge-ins did land where they were meant to: in pauses (the audio stopped well before the stop
    # packet) and in speech (the decoder's tail after it)
    assert sum(v < -10 for v in vs_packet) >= 1 and sum(v > 2 for v in vs_packet) >= 2, vs_packet
