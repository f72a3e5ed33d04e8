"""`vlh report`: default paths, no silent overwrite of -o, one-line errors."""

import os

import pytest

from harness.cli import main
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmd")
    return (make_run(d / "a", turns=6, calls=1, seed=1, recordings="none"),
            make_run(d / "b", turns=6, calls=1, seed=2, recordings="none"))


def test_single_run_default_path_and_refresh(two_runs, capsys):
    a, _ = two_runs
    assert main(["report", str(a)]) == 0
    out = capsys.readouterr().out
    assert f"report written to {a / 'report.html'}" in out and "MB" in out
    assert (a / "report.html").stat().st_size > 1_000_000
    assert main(["report", str(a)]) == 0  # the run's own report is refreshed in place


def test_explicit_out_is_not_overwritten_without_force(two_runs, tmp_path, capsys):
    a, _ = two_runs
    out = tmp_path / "r.html"
    out.write_text("keep me")
    assert main(["report", str(a), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlh: error: ") and "already exists; use --force" in err and err.count("\n") == 1
    assert out.read_text() == "keep me"
    assert main(["report", str(a), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_comparison_default_path(two_runs, tmp_path, capsys, monkeypatch):
    a, b = two_runs
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(a), str(b)]) == 0
    files = list((tmp_path / "reports").glob("compare-*.html"))
    assert len(files) == 1 and os.access(files[0], os.R_OK)


def test_not_a_run_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"vlh: error: {tmp_path}: not a vlh run folder (no run.json); pass a folder written by `vlh run`\n"
