"""The suite history: what goes in comes out (also through plain pandas), baselines, partial suites, versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.results import history as H
from harness.errors import VlhError
from harness.results.history import History, check_night, read_run_folder, tonight
from harness.testing.synthetic import make_run


def run_folder(tmp_path: Path, name: str, seed: int, turns: int = 6, **kw) -> Path:
    return make_run(tmp_path / "runs" / name, turns=turns, calls=1, seed=seed, recordings="none", **kw)


def add(h: History, tmp_path: Path, scenario: str, night: str, seed: int, suite: str | None = None, fp: str = "fp1",
        **kw):
    d = run_folder(tmp_path, f"{scenario}-{night}-{seed}", seed, **kw)
    suite = suite or f"{night}-{seed}"
    return h.append_run(d, scenario=scenario, night=night, suite_id=suite, fingerprint=fp, target="reference:typical")


def test_turns_round_trip_and_plain_pandas_sees_partitions(tmp_path):
    h = History(tmp_path / "hist")
    d = run_folder(tmp_path, "a", seed=1)
    row = h.append_run(d, scenario="short", night="2024-05-01", suite_id="s1", fingerprint="fp", target="t")
    _, src = read_run_folder(d)
    got = h.turns("short")
    assert len(got) == len(src) and set(got["night"]) == {"2024-05-01"} and set(got["scenario"]) == {"short"}
    for col in ("ttfa_ms", "tts_ttfb_ms", "endpointing_ms", "residual_ms", "status", "call", "turn", "stages_json"):
        assert list(got[col]) == list(src[col]), col
    assert row["n_turns"] == len(src) and row["n_ok"] == int((src["status"] == "ok").sum())
    assert row["ttfa_p50_ms"] == pytest.approx(float(np.percentile(src.loc[src.status == "ok", "ttfa_ms"], 50)))
    # a plain pandas read of the dataset: partition columns come from the directory names
    df = pd.read_parquet(tmp_path / "hist" / "turns")
    assert len(df) == len(src) and set(df["scenario"].astype(str)) == {"short"}
    assert set(df["night"].astype(str)) == {"2024-05-01"}
    runs = pd.read_parquet(tmp_path / "hist" / "runs")
    assert list(runs["run_id"]) == [row["run_id"]] and list(runs["entry"]) == ["s1.short"]


def test_every_night_has_the_same_columns_so_pandas_misses_nothing(tmp_path):
    h = History(tmp_path / "hist")
    d1 = run_folder(tmp_path, "n1", seed=1)
    d2 = run_folder(tmp_path, "n2", seed=2)
    t = pd.read_parquet(d1 / "turns.parquet").drop(columns=["interruption_ms", "gap_ms"])  # an older, narrower run
    t.to_parquet(d1 / "turns.parquet")
    t2 = pd.read_parquet(d2 / "turns.parquet")
    t2["interruption_ms"] = 123.0
    t2.to_parquet(d2 / "turns.parquet")
    h.append_run(d1, scenario="s", night="2024-05-01", suite_id="a", fingerprint="f", target="t")
    h.append_run(d2, scenario="s", night="2024-05-02", suite_id="b", fingerprint="f", target="t")
    df = pd.read_parquet(tmp_path / "hist" / "turns")  # pyarrow takes the first file's schema: must hold all
    assert "interruption_ms" in df.columns and "gap_ms" in df.columns
    assert (df.loc[df["night"].astype(str) == "2024-05-02", "interruption_ms"] == 123.0).all()
    assert df.loc[df["night"].astype(str) == "2024-05-01", "interruption_ms"].isna().all()


def test_suite_partial_until_marked_complete(tmp_path):
    h = History(tmp_path / "hist")
    add(h, tmp_path, "a", "2024-05-01", 1, suite="S")
    add(h, tmp_path, "b", "2024-05-01", 2, suite="S")
    add(h, tmp_path, "a", "2024-04-30", 3, suite="OLD")
    assert h.runs()["suite_partial"].all()
    assert h.turns("a")["suite_partial"].all()
    assert h.mark_suite_complete("S") == 2
    r = h.runs()
    assert not r.loc[r.suite_id == "S", "suite_partial"].any() and r.loc[r.suite_id == "OLD", "suite_partial"].all()
    # a new process (no memory of what was written) finds the rows too
    assert History(tmp_path / "hist").mark_suite_complete("OLD") == 1


def test_baseline_last_n_nights_latest_run_each_and_exclusions(tmp_path):
    h = History(tmp_path / "hist")
    for i, night in enumerate(["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04", "2024-05-05"]):
        add(h, tmp_path, "a", night, 10 + i)
    second = add(h, tmp_path, "a", "2024-05-05", 99)  # a re-run the same night: the later one counts
    add(h, tmp_path, "a", "2024-05-04", 50, partial=True)  # incomplete: left out; night 4 still has its first run
    add(h, tmp_path, "a", "2024-05-03", 60, fp="other")  # another stimulus: left out
    d = run_folder(tmp_path, "starved", 61)  # the harness could not time most of it: left out
    h.append_run(d, scenario="a", night="2024-05-05", suite_id="starved", fingerprint="fp1", target="t", n_unreliable=5)
    add(h, tmp_path, "a", "2024-05-06", 70)  # tonight or later: never in the baseline
    add(h, tmp_path, "b", "2024-05-05", 80)  # another scenario
    b = h.baseline("a", "2024-05-06", n=3, fingerprint="fp1")
    assert b.nights == ["2024-05-03", "2024-05-04", "2024-05-05"]
    assert second["entry"] in b.entries and len(b.entries) == 3
    assert "synthetic-14" not in set(b.turns["run_id"]) and "synthetic-99" in set(b.turns["run_id"])
    assert set(b.turns["entry"]) == set(b.entries) and set(b.turns["scenario"]) == {"a"}
    notes = " ".join(b.notes)
    assert "incomplete" in notes and "different version of the scenario" in notes and "starved harness" in notes
    assert len(h.baseline("a", "2024-05-06", n=10, fingerprint="fp1").nights) == 5
    assert h.baseline("a", "2024-05-01", n=3, fingerprint="fp1").nights == []


def test_trend_per_night(tmp_path):
    h = History(tmp_path / "hist")
    for i, night in enumerate(["2024-05-02", "2024-05-01"]):
        add(h, tmp_path, "a", night, 20 + i)
    tr = h.trend("a")
    assert list(tr["night"]) == ["2024-05-01", "2024-05-02"]
    assert (tr["ttfa_p95_ms"] >= tr["ttfa_p50_ms"]).all()


def test_duplicate_run_and_bad_night_refused(tmp_path):
    h = History(tmp_path / "hist")
    d = run_folder(tmp_path, "a", seed=1)
    h.append_run(d, scenario="a", night="2024-05-01", suite_id="s", fingerprint="f", target="t")
    with pytest.raises(VlhError, match="already in the history"):
        h.append_run(d, scenario="a", night="2024-05-02", suite_id="s", fingerprint="f", target="t")
    # the same run_id from another suite (a run folder's name need not be unique over nights) is fine
    h.append_run(d, scenario="a", night="2024-05-02", suite_id="s2", fingerprint="f", target="t")
    assert list(h.runs("a")["run_id"]) == ["synthetic-1", "synthetic-1"]
    for bad in ("2024-5-1", "yesterday", "2024-02-30"):
        with pytest.raises(VlhError, match="YYYY-MM-DD"):
            check_night(bad)
    assert len(tonight()) == 10


def test_not_a_history_and_not_a_run_folder(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.txt").write_text("x")
    with pytest.raises(VlhError, match="not a vlh history"):
        History(tmp_path / "stuff")
    (tmp_path / "file").write_text("x")
    with pytest.raises(VlhError, match="is a file"):
        History(tmp_path / "file")
    with pytest.raises(VlhError, match="run.json is missing"):
        read_run_folder(tmp_path / "stuff")


def test_newer_history_is_refused_with_versions_named(tmp_path):
    h = History(tmp_path / "hist")
    meta = json.loads(h.meta_file.read_text())
    meta.update(schema_version=H.HISTORY_SCHEMA + 98, created_by="vlh 9.0")
    h.meta_file.write_text(json.dumps(meta))
    with pytest.raises(VlhError) as ei:
        History(tmp_path / "hist")
    msg = str(ei.value)
    assert "newer vlh" in msg and "vlh 9.0" in msg and str(tmp_path / "hist") in msg and "upgrade vlh" in msg


def test_older_history_without_migration_is_refused_clearly(tmp_path, monkeypatch):
    h = History(tmp_path / "hist")
    add(h, tmp_path, "a", "2024-05-01", 1)
    monkeypatch.setattr(H, "HISTORY_SCHEMA", H.HISTORY_SCHEMA + 1)  # this vlh moved on, with no migration
    with pytest.raises(VlhError) as ei:
        History(tmp_path / "hist")
    assert "cannot be read" in str(ei.value) and "--history NEW_DIR" in str(ei.value)


def test_older_history_is_migrated_on_read(tmp_path, monkeypatch):
    h = History(tmp_path / "hist")
    add(h, tmp_path, "a", "2024-05-01", 1)
    old = H.HISTORY_SCHEMA

    def migrate(df: pd.DataFrame, table: str) -> pd.DataFrame:
        return df.assign(migrated=table)

    monkeypatch.setattr(H, "HISTORY_SCHEMA", old + 1)
    monkeypatch.setitem(H.MIGRATIONS, old, migrate)
    h2 = History(tmp_path / "hist")
    assert set(h2.turns("a")["migrated"]) == {"turns"} and set(h2.runs("a")["migrated"]) == {"runs"}
    add(h2, tmp_path, "a", "2024-05-02", 2)  # writing upgrades history.json: an older vlh will now refuse it
    assert json.loads(h2.meta_file.read_text())["schema_version"] == old + 1


def test_file_without_version_is_refused(tmp_path):
    h = History(tmp_path / "hist")
    add(h, tmp_path, "a", "2024-05-01", 1)
    f = next((tmp_path / "hist" / "turns").rglob("*.parquet"))
    t = pq.read_table(f, partitioning=None).replace_schema_metadata({})
    pq.write_table(t, f)
    with pytest.raises(VlhError, match="no vlh_history_schema"):
        h.turns("a")


def test_interrupted_write_leaves_no_half_file(tmp_path, monkeypatch):
    h = History(tmp_path / "hist")
    d = run_folder(tmp_path, "a", seed=1)

    def boom(table, where, *a, **k):  # killed halfway through writing the file
        Path(where).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(H.pq, "write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        h.append_run(d, scenario="a", night="2024-05-01", suite_id="s", fingerprint="f", target="t")
    assert not list((tmp_path / "hist").rglob("*.parquet"))
    assert h.turns("a").empty and h.runs().empty
