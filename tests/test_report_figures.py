"""harness.report.figures: valid plotly figures whose bars add up to the TTFA."""

import numpy as np
import plotly.graph_objects as go
import pytest

from harness.report import figures
from harness.report.load import load_run
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load_run(make_run(tmp_path_factory.mktemp("fig") / "r", turns=30, calls=3, recordings="none", seed=3,
                             unattributed_every=4, anomaly_every=7, payload=True))


def validate(fig):
    go.Figure({"data": fig["data"], "layout": fig["layout"]})  # raises on any invalid property


def stacked(fig, bar):
    return sum(t["y"][bar] or 0.0 for t in fig["data"] if t["type"] == "bar")


def test_waterfall_one_bar_per_turn_sums_to_ttfa(run):
    wf = figures.waterfall(run.turns, run.spans)
    validate(wf)
    ok = run.ok.sort_values("ttfa_ms")
    assert [len(g) for g in wf["groups"]] == [1] * len(ok)
    for bar, g in enumerate(wf["groups"]):
        mine = run.spans[run.spans["row"] == g[0]]
        n_spans = len(mine)  # each span is rounded to 0.1 ms
        # a negative span is not drawn: the bar is the TTFA plus what the negative residual took off
        negative = float(mine["ms"][mine["ms"] < 0].sum())
        assert stacked(wf, bar) == pytest.approx(run.turns.loc[g[0], "ttfa_ms"] - negative,
                                                 abs=0.05 * n_spans + 1e-9)
    names = [t["name"] for t in wf["data"] if t["type"] == "bar"]
    assert names.index("endpointing") < names.index("TTS") < names.index("jitter buffer")
    unatt = [n for n in names if "unattributed" in n]
    assert unatt and all("&lt;img" in n and "<img" not in n for n in unatt)  # agent text escaped for plotly
    assert any(n.startswith("residual") for n in names)
    assert (run.spans["ms"] < 0).sum() > 0  # the anomaly turns have a negative residual …
    neg = [t for t in wf["data"] if t["type"] == "bar" and any(v is not None and v < 0 for v in t["y"])]
    assert not neg  # … never drawn as a (negative) bar


def test_waterfall_hover_shows_overlapped_beside_its_stage(tmp_path):
    run = load_run(make_run(tmp_path / "r", turns=8, calls=1, recordings="none", seed=5, overlap_every=2))
    wf = figures.waterfall(run.turns, run.spans)
    validate(wf)
    td = next(t for t in wf["data"] if t["name"] == "turn detection")
    assert "overlapped beside STT (not summed)" in td["hovertemplate"]
    ok = run.ok.sort_values(["ttfa_ms", "call", "turn"], kind="stable")
    for bar, (_, r) in enumerate(ok.iterrows()):
        want = r["overlapped_ms"] if r["overlapped_stage"] == "turn_detection" else None
        assert td["customdata"][bar] == (None if want is None else pytest.approx(want, abs=0.05))
        # overlapped time is not part of the bar: the bar still adds up to the TTFA
        assert stacked(wf, bar) == pytest.approx(r["ttfa_ms"], abs=0.05 * 14)


def test_waterfall_groups_neighbours_above_max_bars(run, monkeypatch):
    monkeypatch.setattr(figures, "MAX_BARS", 7)
    wf = figures.waterfall(run.turns, run.spans)
    validate(wf)
    assert len(wf["groups"]) <= 7 and sum(len(g) for g in wf["groups"]) == len(run.ok)
    for bar, g in enumerate(wf["groups"]):
        mine = run.spans[run.spans["row"].isin(g)]
        negative = float(mine["ms"][mine["ms"] < 0].sum()) / len(g)  # not drawn (mean over the group)
        assert stacked(wf, bar) == pytest.approx(run.turns.loc[g, "ttfa_ms"].mean() - negative, abs=1.0)


def test_ecdf_uses_every_value_and_exact_quantiles(run):
    v = run.ok["ttfa_ms"].to_numpy()
    fig = figures.ecdf([{"name": "TTFA", "values": v, "color": "#123456"}])
    validate(fig)
    line, marks = fig["data"]
    assert len(line["x"]) == len(v) and line["x"] == sorted(line["x"])
    assert line["y"][-1] == 1.0 and max(line["x"]) == pytest.approx(v.max(), abs=0.05)
    assert marks["x"] == pytest.approx(list(np.percentile(v, [50, 95, 99])), abs=0.05)
    assert figures.ecdf([{"name": "x", "values": []}]) is None


def test_stage_compare_is_valid():
    fig = figures.stage_compare([("a <b>", [{"label": "TTS", "p50": 1.0, "p95": 2.0}])])
    validate(fig)
    assert fig["data"][0]["name"] == "a &lt;b&gt;"


def test_waterfall_outlines_are_the_same_bars(run, monkeypatch):
    """From AREA_FROM bars on, each stage is drawn as filled outlines (issue 19.5: one SVG path per stage instead
    of a rectangle per bar): every bar's positive stack and negative stack hold the values of the bar chart."""
    monkeypatch.setattr(figures, "AREA_FROM", 10**9)
    bars = figures.waterfall(run.turns, run.spans)
    monkeypatch.setattr(figures, "AREA_FROM", 1)
    area = figures.waterfall(run.turns, run.spans)
    validate(area)
    assert area["groups"] == bars["groups"]
    assert not [t for t in area["data"] if t["type"] == "bar"]
    stacks = [t for t in area["data"] if t.get("stackgroup")]
    shown = [t["name"] for t in stacks if t["showlegend"]]
    assert shown == [t["name"] for t in bars["data"] if t["type"] == "bar"]  # same stages, same order
    # the fixture has negative residuals, but a negative span is never drawn (it is an anomaly row): no "neg" stack
    assert (run.turns["residual_ms"] < 0).any()
    assert not any(t["stackgroup"] == "neg" for t in stacks)
    assert all((v or 0.0) >= 0 for t in bars["data"] if t["type"] == "bar" for v in t["y"])
    for i in range(len(bars["groups"])):
        vals = [t["y"][i] or 0.0 for t in bars["data"] if t["type"] == "bar"]
        for stack, want in (("pos", sum(v for v in vals if v > 0)), ("neg", sum(v for v in vals if v < 0))):
            got = [t["y"][2 * i + j] or 0.0 for t in stacks if t["stackgroup"] == stack for j in (0, 1)]
            assert sum(got[0::2]) == pytest.approx(want, abs=1e-6) and got[0::2] == got[1::2]
        assert {round(t["x"][2 * i]) for t in stacks} == {round(t["x"][2 * i + 1]) for t in stacks} == {i + 1}
    ttfa = next(t for t in area["data"] if t["name"] == "TTFA at the ear")
    assert ttfa["y"] == next(t for t in bars["data"] if t["name"] == "TTFA at the ear")["y"]
