"""The load section of the report: exact per-level percentiles, SLO lines, the stage that grew most; absent for
runs that are not load runs. Real render of a synthetic load run folder."""

import json

import numpy as np
import pandas as pd

from harness.report.capacity import levels_table, load_context, load_figure, stage_that_grew


def _turns():
    rng = np.random.default_rng(3)
    rows = []
    for level, wait in ((1, 0.0), (2, 200.0), (4, 2000.0)):
        for k in range(20):
            d = float(wait + rng.uniform(0, 100))
            rows.append({"status": "ok", "load_level": level, "concurrent_calls": level, "ttfa_ms": 900.0 + d,
                         "llm_dispatch_ms": d, "stt_ms": 100.0 + rng.uniform(0, 1), "call": k, "turn": 1})
    rows.append({"status": "no_response", "load_level": 4, "ttfa_ms": None, "call": 99, "turn": 1})
    return pd.DataFrame(rows)


def test_levels_are_exact_percentiles():
    df = _turns()
    tab = levels_table(df)
    assert [r["level"] for r in tab] == [1, 2, 4] and tab[2]["turns"] == 21 and tab[2]["answered"] == 20
    at2 = df[(df["load_level"] == 2) & (df["status"] == "ok")]["ttfa_ms"]
    assert tab[1]["p95"] == float(np.percentile(at2, 95))


def test_the_stage_that_grew_is_the_queue():
    g = stage_that_grew(_turns())
    assert g["stage"] == "llm_dispatch" and g["from"] == 1 and g["to"] == 4 and 1900 < g["grew_ms"] < 2100


def test_figure_has_both_curves_the_slo_lines_and_the_capacity():
    meta = {"load": {"engine": "locust", "workers": 2},
            "capacity": {"capacity": 2, "statement": "capacity: 2 …", "slo": {"ttfa_p95_ms": 1500,
                                                                              "no_response_rate": 0.01}}}
    fig = load_figure(_turns(), meta)
    assert [t["name"] for t in fig["data"]] == ["TTFA p50", "TTFA p95"] and fig["data"][0]["x"] == [1, 2, 4]
    assert [s["y0"] for s in fig["layout"]["shapes"] if s.get("xref") == "paper"] == [1500.0]
    assert any(s.get("x0") == 2 for s in fig["layout"]["shapes"])
    assert load_context(_turns(), meta)["statement"] == "capacity: 2 …"
    assert load_context(_turns(), {}) is None  # not a load run


def test_a_load_run_folder_renders_with_the_section(tmp_path):
    from harness.report.render import write_report
    from harness.results.store import RunStore

    df = _turns()
    store = RunStore(tmp_path / "run", {"scenario": "x", "load": {"engine": "locust", "workers": 2},
                                        "transport": "webrtc"})
    for k, r in enumerate(df.to_dict("records")):
        r.update(call=k + 1, turn=1, text="hi", stages_json=json.dumps(
            [{"stage": "llm_dispatch", "ms": r["ttfa_ms"]}] if r["ttfa_ms"] == r["ttfa_ms"] and r["ttfa_ms"] else []))
        store.add_call(k + 1, None, [r], [])
    store.flush(extra={"capacity": {"capacity": 2, "statement": "capacity: 2 concurrent calls",
                                    "slo": {"ttfa_p95_ms": 1500}}})
    out = write_report([tmp_path / "run"], tmp_path / "report.html")
    html = out.read_text()
    assert 'id="load"' in html and "capacity: 2 concurrent calls" in html and "llm_dispatch" in html
