"""Every bench script runs to the end in its smallest setting and prints its table, so none of them can rot.

Speed is measured by the scripts themselves (bench/README.md), never here: these tests assert that each script
completes and produces its table (and, where the script checks against ground truth, that the turns were made and
matched), not how fast anything was. None of them is asked to write bench/README.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _run(script: str, *args: str, timeout: float = 240) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def _table_rows(out: str, header: str) -> list[list[str]]:
    """The body rows of the first Markdown table whose header line contains `header`."""
    lines = out.splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.startswith("|") and header in ln), None)
    assert head is not None, f"no table with {header!r} in its header:\n{out[-2000:]}"
    body = lines[head + 1:]
    if body and re.match(r"^\|[-:| ]+\|$", body[0]):  # the separator line (analyze_speed prints none)
        body = body[1:]
    rows = []
    for ln in body:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_accuracy_quick():
    out = _run("accuracy.py", "--quick")
    rows = _table_rows(out, "| condition |")
    assert len(rows) == 1 and rows[0][0] == "typical"
    assert rows[0][1] == "1/1"  # the one turn was answered
    assert "Goal ear boundaries p99" in out


def test_analyze_speed_smallest():
    out = _run("analyze_speed.py", "--minutes", "0.2", "--repeat", "1")
    rows = _table_rows(out, "| date | recording |")
    assert len(rows) == 1 and "stereo 48 kHz" in rows[0][1]


def test_analyze_memory_smallest():
    out = _run("analyze_memory.py", "--minutes", "1")
    rows = _table_rows(out, "| date | recording |")
    assert len(rows) == 1 and "block-wise" in rows[0][2] and float(rows[0][3].strip("* MB")) > 0
    assert int(rows[0][5]) > 0  # turns were found


def test_report_size_small():
    out = _run("report_size.py", "--turns", "40", "--repeat", "1")
    rows = _table_rows(out, "| turns |")
    assert len(rows) == 1 and "40" in rows[0], rows
    assert any(c.endswith("MB") for c in rows[0]), rows  # the file size


def test_scale_quick(tmp_path):
    # two calls, each on its own agent process (their truth logs are merged), one harness worker per phase
    out = _run("scale.py", "--quick", "--calls-per-agent", "1", "--out", str(tmp_path))
    rows = _table_rows(out, "| calls (at once")
    assert [r[0] for r in rows] == ["2 (2 / 2)"]  # both calls were in progress together, in both phases
    assert rows[0][1] == "2 / 1"  # agents / harness processes
    ok, matched = rows[0][2].split(" / ")
    assert ok == "2/2" and matched == "2", rows[0]  # both turns answered and found in the agents' truth logs
    assert re.search(r"\*\*\d+\.\d\d×\*\*", rows[0][5]), rows[0][5]  # the vlh / bare ratio
    assert "Goal CPU ≤ 1.3×" in out and "Goal ≥ 20 concurrent calls" in out
    assert (tmp_path / "calls-2" / "vlh" / "turns.parquet").exists()


def test_soak_quick(tmp_path):
    out = _run("soak.py", "--quick", "--out", str(tmp_path))
    assert "estimated runtime:" in out
    rows = _table_rows(out, "| mode |")
    assert [r[0].split(" ")[0] for r in rows] == ["long", "short"]
    for r in rows:
        ok, planned, _matched, _agent = r[1].split(" / ")
        assert planned == "4" and ok == "4", r  # no turn lost (matching to truth is the script's verdict)
    assert "long: no turn lost" in out and "short: no turn lost" in out


def test_edge_reachability_tells_a_tone_from_the_noise():
    """`bench/edge_reachability.py`'s measure can fail both ways: a stretch of pink noise alone is held by the noise
    at a large share of positions, the same stretch with a tone 10 dB over the noise at none; and the script prints
    its table for one row."""
    sys.path.insert(0, str(BENCH))
    import edge_reachability as er
    import numpy as np

    from harness.audio.noise import colored

    sr, n = er.SR, er.SR
    noise = colored("pink", n, 5).astype(np.float64) * 0.01
    tone = np.zeros(n)
    true = n // 2  # a start: the speech begins here; the detector said 15 ms later
    tone[true:] = np.sin(2 * np.pi * 700 * np.arange(n - true) / sr) * 0.01 * 10 ** (10 / 20) * np.sqrt(2)
    det = true + int(sr * 0.015)
    assert er.stretch_p(noise, noise, "pink", det, true, start=True) > 0.05
    assert er.stretch_p(noise + tone, noise, "pink", det, true, start=True) < er.REACHABLE_P
    out = _run("edge_reachability.py", "--snr", "35", "--noise", "pink", "--family", "festival")
    assert _table_rows(out, "reach into the noise") == [["festival", "pink 35 dB", "1", "1", "0", "0", "0"]]
