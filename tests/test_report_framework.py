"""The report's "pipecat says X ms; the ear heard Y ms; the Z ms it cannot see are …" sentence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.report.framework import framework_sentence
from harness.report.render import write_report
from harness.testing.synthetic import make_run

UNSEEN = ["endpointing", "transport", "jitter_buffer", "codec", "playout"]


def _with_framework(tmp_path, frameworks=("pipecat",), every=1):
    out = make_run(tmp_path / "r", turns=12, calls=2, seed=5, no_response_every=6, recordings="none")
    df = pd.read_parquet(out / "turns.parquet")
    # a framework sees from its estimate of the speech end to its first audio sent: TTFA minus the unseen stages
    unseen = df[[f"{s}_ms" for s in UNSEEN]].sum(axis=1)
    fw = (df["ttfa_ms"] - unseen).where(df["status"] == "ok")
    fw[df.index % every != 0] = np.nan
    df["framework_v2v_ms"] = fw
    df.to_parquet(out / "turns.parquet", index=False)
    meta = json.loads((out / "run.json").read_text())
    meta["otlp"] = {"frameworks": list(frameworks)}
    (out / "run.json").write_text(json.dumps(meta))
    return out, df


def test_sentence_numbers(tmp_path):
    out, df = _with_framework(tmp_path)
    meta = json.loads((out / "run.json").read_text())
    s = framework_sentence(meta, df)
    ok = df[df["status"] == "ok"]
    assert s["framework"] == "pipecat" and s["n"] == len(ok)
    assert s["says_ms"] == np.median(ok["framework_v2v_ms"])
    assert s["heard_ms"] == np.median(ok["ttfa_ms"])
    assert abs(s["unseen_ms"] - np.median(ok[[f"{x}_ms" for x in UNSEEN]].sum(axis=1))) < 1e-9
    assert [p["label"] for p in s["parts"]] == ["uplink", "transport", "jitter buffer", "codec", "playout"]
    assert s["parts"][1]["ms"] == np.median(ok["transport_ms"])
    assert s["text"].startswith(f"pipecat says {s['says_ms']:.0f} ms; the ear heard {s['heard_ms']:.0f} ms; "
                                f"the {s['unseen_ms']:.0f} ms it cannot see are uplink ")


def test_sentence_in_report_and_partial_coverage_said(tmp_path):
    out, df = _with_framework(tmp_path, ("livekit",), every=2)
    html = write_report([out], out / "report.html").read_text()
    assert 'id="framework-sentence"' in html and "LiveKit says" in html
    assert "answered turns carry LiveKit" in html


def test_no_sentence_without_framework_figures(tmp_path):
    out = make_run(tmp_path / "r", turns=4, calls=1, seed=1, recordings="none")
    df = pd.read_parquet(out / "turns.parquet")
    assert framework_sentence({}, df) is None
    assert 'id="framework-sentence"' not in write_report([out], out / "report.html").read_text()
