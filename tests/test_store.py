"""Run folders are transactional: run.json says whether the run finished; a failed or empty run's folder takes the
next run without --force (its old files go), a finished run's folder is kept unless --force."""

from __future__ import annotations

import json

import pytest

from harness.errors import VlhError
from harness.results.store import RunStore, run_state


def _finished(path, rows, state=None, partial=False):
    st = RunStore(path, {"scenario": "builtin"})
    st.add_call(1, None, rows, [])
    st.flush(partial=partial, state=state)
    return json.loads((path / "run.json").read_text())


def test_states(tmp_path):
    assert _finished(tmp_path / "a", [], partial=True)["state"] == "running"
    assert _finished(tmp_path / "b", [{"call": 1, "turn": 1, "status": "ok", "ttfa_ms": 500.0}])["state"] == "complete"
    assert run_state({"partial": True}) == "interrupted"  # folders written before `state`
    assert run_state({}) == "complete"


def test_failed_run_folder_is_reused_without_force(tmp_path):
    out = tmp_path / "r"
    _finished(out, [{"call": 1, "turn": 1, "status": "error:connect", "error": "unreachable"}], state="failed")
    (out / "recordings" / "call-1.wav").write_bytes(b"old")
    (out / "agent.log").write_text("old")
    (out / "notes.txt").write_text("mine")
    st = RunStore(out, {"scenario": "builtin"})  # no VlhError
    assert not (out / "run.json").exists() and not (out / "turns.parquet").exists()
    assert not (out / "recordings" / "call-1.wav").exists() and not (out / "agent.log").exists()
    assert (out / "notes.txt").read_text() == "mine"  # only vlh's own files go
    st.flush()


def test_empty_run_folder_is_reused_without_force(tmp_path):
    out = tmp_path / "r"
    _finished(out, [])
    RunStore(out, {})


def test_finished_run_folder_is_kept_unless_force(tmp_path):
    out = tmp_path / "r"
    _finished(out, [{"call": 1, "turn": 1, "status": "no_response"}])
    with pytest.raises(VlhError, match="already holds a run"):
        RunStore(out, {})
    RunStore(out, {}, force=True)
    assert not (out / "turns.parquet").exists()
