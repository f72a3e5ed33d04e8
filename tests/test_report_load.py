"""harness.report.load: run folders in, a clear line out for anything that is not one."""

import json

import pandas as pd
import pytest

from harness.errors import VlhError
from harness.report.load import is_run_dir, load_run
from harness.results.schema import TURN_COLUMNS
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "r", turns=8, calls=2, recordings="none",
                    unattributed_every=3, no_response_every=5)


def copy_run(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file():
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_loads_a_synthetic_run(run_dir):
    run = load_run(run_dir)
    assert is_run_dir(run_dir)
    assert run.problems == []
    assert len(run.turns) == 8 and set(TURN_COLUMNS) <= set(run.turns.columns)
    assert list(zip(run.turns["call"], run.turns["turn"])) == sorted(zip(run.turns["call"], run.turns["turn"]))
    assert len(run.ok) == 7  # turn 5 is no_response
    i = run.ok.index[0]
    assert abs(run.spans.loc[run.spans["row"] == i, "ms"].sum() - run.turns.at[i, "ttfa_ms"]) < 1e-6
    merged = run.spans[run.spans["kind"] == "unattributed"]
    assert len(merged) == 2 and set(merged["key"]) == {"stt…llm_dispatch (unattributed)"}
    assert set(run.spans["row"]) == set(run.ok.index)
    assert run.events is not None and {"call", "turn", "name", "t_mono"} <= set(run.events.columns)


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such folder"),
    ("file", "not a folder"),
    ("empty", "not a vlh run folder (no run.json)"),
    ("badjson", "run.json: not valid JSON (line 1"),
    ("list", "expected a JSON object"),
    ("noturns", "turns.parquet is missing"),
    ("badparquet", "turns.parquet: unreadable Parquet"),
    ("nocolumn", "missing column(s) ttfa_ms"),
])
def test_bad_input_is_one_clear_line(tmp_path, run_dir, case, expected):
    d = tmp_path / "x"
    if case == "file":
        d.write_text("hello")
    elif case == "empty":
        d.mkdir()
    elif case != "missing":
        copy_run(run_dir, d)
        if case == "badjson":
            (d / "run.json").write_text("{oops")
        elif case == "list":
            (d / "run.json").write_text("[1, 2]")
        elif case == "noturns":
            (d / "turns.parquet").unlink()
            (d / "turns.csv").unlink()
        elif case == "badparquet":
            (d / "turns.parquet").write_bytes(b"PAR1 not really")
            (d / "turns.csv").unlink()  # with turns.csv the report falls back to it
        elif case == "nocolumn":
            pd.read_parquet(d / "turns.parquet").drop(columns=["ttfa_ms"]).to_parquet(d / "turns.parquet")
    with pytest.raises(VlhError) as e:
        load_run(d)
    msg = str(e.value)
    assert expected in msg and str(d) in msg and "\n" not in msg


def test_partial_run_without_turns_is_reported_not_refused(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "p")
    (d / "turns.parquet").unlink()
    (d / "turns.csv").unlink()
    meta = json.loads((d / "run.json").read_text())
    meta["partial"] = True
    (d / "run.json").write_text(json.dumps(meta))
    run = load_run(d)
    assert run.partial and run.turns.empty and run.ok.empty
    assert any("interrupted before any turn" in p for p in run.problems)


def test_csv_fallback_and_missing_events_are_problems_not_errors(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "c")
    (d / "turns.parquet").unlink()
    (d / "events.parquet").unlink()
    run = load_run(d)
    ref = load_run(run_dir)
    assert run.events is None
    assert any("read turns.csv instead" in p for p in run.problems)
    assert any("no events.parquet" in p for p in run.problems)
    pd.testing.assert_series_equal(run.turns["ttfa_ms"], ref.turns["ttfa_ms"], rtol=1e-12)
    pd.testing.assert_frame_equal(run.spans, ref.spans)


def test_stages_that_do_not_sum_to_ttfa_are_flagged(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "s")
    t = pd.read_parquet(d / "turns.parquet")
    i = t.index[t["status"] == "ok"][0]
    t.loc[i, "ttfa_ms"] += 25.0
    t.to_parquet(d / "turns.parquet")
    probs = load_run(d).problems
    who = f"call {t.loc[i, 'call']} turn {t.loc[i, 'turn']}"
    assert any(p.startswith(who) and "stages_json spans sum to" in p for p in probs)
    assert any(p.startswith(who) and "stage columns + unattributed + residual" in p for p in probs)


def test_missing_optional_columns_and_bad_stages_json_are_listed(tmp_path, run_dir):
    d = copy_run(run_dir, tmp_path / "o")
    t = pd.read_parquet(d / "turns.parquet").drop(columns=["stutter_gaps", "interruption_ms"])
    t.loc[0, "stages_json"] = "[{not json"
    t.to_parquet(d / "turns.parquet")
    run = load_run(d)
    assert any("lacks column(s) stutter_gaps, interruption_ms" in p for p in run.problems)
    assert any(p.startswith("call 1 turn 1: stages_json unreadable") for p in run.problems)
    assert 0 not in set(run.spans["row"]) and 1 in set(run.spans["row"])


def test_report_of_a_failed_run_has_the_banner(tmp_path, capsys):
    """A run whose agent was unreachable (a real run, a closed port) and a run that never started a call (a typo in
    --profile): `vlh report` writes a report with the 'failed' and 'zero-ok' banners, not an error."""
    import socket

    from harness.cli import main as vlh

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    unreachable, no_start = tmp_path / "unreachable", tmp_path / "no-start"
    assert vlh(["run", "--agent", f"http://127.0.0.1:{port}/", "--turns", "2", "--out", str(unreachable),
                "--no-report"]) == 3
    assert vlh(["run", "--profile", "no-such-profile", "--out", str(no_start), "--no-report"]) == 2
    for folder in (unreachable, no_start):
        assert vlh(["report", str(folder)]) == 0
        html = (folder / "report.html").read_text()
        assert 'data-banner="failed"' in html and 'data-banner="zero-ok"' in html
    capsys.readouterr()


def test_unreadable_parquet_falls_back_to_csv(tmp_path):
    from harness.report.load import load_run
    from harness.results.store import RunStore

    st = RunStore(tmp_path / "r", {"scenario": "builtin"})
    st.add_call(1, None, [{"call": 1, "turn": 1, "status": "no_response", "ttfa_ms": None}], [])
    st.flush()
    (tmp_path / "r" / "turns.parquet").write_bytes(b"PAR1 damaged")
    run = load_run(tmp_path / "r")
    assert list(run.turns["status"]) == ["no_response"]
    assert any("unreadable" in p and "turns.csv" in p for p in run.problems)
