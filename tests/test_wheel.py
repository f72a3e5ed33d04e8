"""`pip install .` (not editable) gives a working vlh: build the wheel from a copy of the sources, install it into a
fresh venv next to the locked dependencies (requirements-lock.txt, hashes checked; served from pip's cache after the
first run), then, from a directory without the sources, `vlh --version`, `vlh doctor`, `vlh scenarios validate`
on the built-in set and `vlh run --turns 1` against the reference agent (real WebRTC, espeak-ng, webrtcvad).

Real-time: run this file under `flock /tmp/vlh-rt.lock` like every test that calls the reference agent.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sh(cmd, cwd, timeout=600):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} → {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copytree(REPO / "harness", src / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", src], tmp)
    wheel = next((tmp / "dist").glob("voice_latency_harness-*.whl"))
    venv = tmp / "venv"
    sh([sys.executable, "-m", "venv", venv], tmp)
    py = venv / "bin" / "python"
    sh([py, "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r", REPO / "requirements-lock.txt"],
       tmp, timeout=900)
    sh([py, "-m", "pip", "install", "-q", "--no-deps", wheel], tmp)
    sh([py, "-m", "pip", "check"], tmp)
    work = tmp / "work"
    work.mkdir()
    return venv, work


def test_the_installed_package_is_used(installed):
    venv, work = installed
    where = sh([venv / "bin" / "python", "-c", "import harness; print(harness.__file__)"], work).strip()
    assert where.startswith(str(venv)) and "site-packages" in where


def test_version_and_doctor(installed):
    venv, work = installed
    line = sh([venv / "bin" / "vlh", "--version"], work).strip()
    assert line.startswith("vlh ") and all(f" {n} " in line for n in ("aiortc", "aioice", "av", "webrtcvad", "numpy"))
    assert "every system part is there" in sh([venv / "bin" / "vlh", "doctor"], work)


def test_package_data_scenarios_profiles_templates(installed):
    venv, work = installed
    sh([venv / "bin" / "vlh", "scenarios", "validate",
        sh([venv / "bin" / "python", "-c", "from harness.suite.builtin import builtin_path; print(builtin_path())"],
           work).strip()], work)
    assert "reasoning" in sh([venv / "bin" / "vlh", "agent", "--help"], work)


def test_vlh_run_one_turn_from_the_wheel(installed):
    venv, work = installed
    sh([venv / "bin" / "vlh", "run", "--turns", "1", "--out", work / "run"], work, timeout=300)
    turns = (work / "run" / "turns.csv").read_text().splitlines()
    assert len(turns) == 2  # header + one turn
    meta = json.loads((work / "run" / "run.json").read_text())
    assert meta["versions"]["aiortc"] and (work / "run" / "report.html").is_file()
    import pandas as pd

    t = pd.read_csv(work / "run" / "turns.csv")
    assert t.loc[0, "status"] == "ok" and 0 < t.loc[0, "ttfa_ms"] < 5000
