"""The WebRTC client's capture and the turn's columns share one time base (issue 16 item 5).

A real call to the reference agent over aiortc: sample i of the recording is at `t0_mono + i / rate` (its sidecar),
and every turn's `*_mono` instant must be that clock's `t0_mono + *_s` — within 0.1 ms, not the ≈1 ms of the mic
frames' event-loop lateness that used to separate them — so a report places each clip without a note.
"""

from __future__ import annotations

import json

import pandas as pd

from harness.measure.runner import RunConfig, run_measurement
from harness.report.clips import recording_t0

TOL_S = 0.1e-3


def test_capture_clock_and_turn_columns_agree(tmp_path):
    cfg = RunConfig(agent_profile="typical", agent_overrides={"response": ["Sure thing.", "It is done."]}, turns=3,
                    texts=["What time is it now?", "Book a table for two.", "How far is the airport?"], calls=1,
                    out_dir=tmp_path / "run", report=False, progress=False)
    out = run_measurement(cfg)
    rec = out / "recordings" / "call-1.wav"
    t0 = json.loads((out / "recordings" / "call-1.wav.json").read_text())["t0_mono"]
    df = pd.read_parquet(out / "turns.parquet")
    ok = df[df["status"] == "ok"]
    assert len(ok) == 3, df[["turn", "status", "error"]]
    # the mic frames did leave late (else this test could not tell the two clocks apart)
    assert (ok["mic_end_late_ms"] > 0).all(), ok["mic_end_late_ms"].tolist()
    for col in ("user_speech_end", "agent_audio_start"):
        gap = (t0 + ok[f"{col}_s"] - ok[f"{col}_mono"]).abs()
        assert gap.max() <= TOL_S, f"{col}: t0_mono + {col}_s vs {col}_mono: {(gap * 1e3).round(3).tolist()} ms"
    for turn in ok.to_dict("records"):
        t, note = recording_t0(rec, turn)
        assert note is None and t == t0, note
