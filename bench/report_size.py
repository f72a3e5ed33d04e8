"""How long `vlh report` takes and how big the file gets at 1 000 and 10 000 turns (issue: ≤ 5 s, ≤ 15 MB).

Synthetic run folders (harness.testing.synthetic; real WAV captures for the calls that hold the featured turns)
are generated first — not timed — then `write_report` (load + check + render + write) is timed, best of
--repeat runs. With --browser, the time until headless Chromium has drawn every chart is measured too.

    .venv/bin/python bench/report_size.py [--turns 1000 10000] [--repeat 3] [--browser] [--readme bench/README.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.report.render import write_report  # noqa: E402
from harness.testing.synthetic import make_run  # noqa: E402

SECTION = "## Report generation (bench/report_size.py)"


def bench(n: int, repeat: int, browser: bool, work: Path) -> dict:
    d = work / f"run-{n}"
    t = time.perf_counter()
    make_run(d, turns=n, calls=max(1, n // 20), seed=n, recordings="featured", unattributed_every=9,
             anomaly_every=97, reasoning_every=13, stutter_every=17, no_response_every=101, error_every=211)
    gen = time.perf_counter() - t
    times, cpu = [], []
    out = d / "report.html"
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        write_report([d], out)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    row = {"turns": n, "gen_s": gen, "report_s": min(times), "report_s_max": max(times), "cpu_s": min(cpu),
           "size_mb": out.stat().st_size / 1e6, "load": os.getloadavg()[0]}
    if browser:
        row["browser_s"], nav = asyncio.run(_browser_time(out))
        # navigation timing: the file read (responseEnd), the inline scripts done (domInteractive), load event
        row["nav"] = {k: nav[k] / 1000 for k in ("responseEnd", "domInteractive", "loadEventEnd")}
    return row


async def _browser_time(path: Path) -> float:
    from harness.testing.browser import Chromium

    async with Chromium() as b:
        t = time.perf_counter()
        page = await b.open(path, timeout=300)
        dt = time.perf_counter() - t
        errors = page.console_errors()
        if errors or page.foreign_requests():
            raise SystemExit(f"browser problems: {errors} {page.foreign_requests()}")
        nav = await page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
        return dt, json.loads(nav)


HEAD = ("| date | turns | wall time (best) | wall time (worst) | CPU time (best) | host load avg | file size "
        "| Chromium drawn |")
SEP = "|---|---:|---:|---:|---:|---:|---:|---:|"
MARK = "<!-- report_size rows -->"


def rows_md(rows: list[dict]) -> list[str]:
    day = time.strftime("%Y-%m-%d")
    return [f"| {day} | {r['turns']:,}{' (full plotly.js)' if r.get('full_plotly') else ''} | {r['report_s']:.2f} s | "
            f"{r['report_s_max']:.2f} s | {r['cpu_s']:.2f} s | "
            f"{r['load']:.1f} | {r['size_mb']:.1f} MB | "
            + (f"{r['browser_s']:.1f} s |" if "browser_s" in r else "– |") for r in rows]


def update_readme(path: Path, rows: list[dict], repeat: int) -> None:
    """Add the rows to this script's table in `path` (the section is created on first use; older rows stay)."""
    text = (path.read_text() if path.exists()
            else "# vlh benchmarks\n\nEach script in bench/ appends or refreshes its own section.\n")
    if SECTION not in text:
        intro = (f"{SECTION}\n\n`write_report` on synthetic run folders written by `harness.testing.synthetic` "
                 "through the run store (load, schema checks, summary, figures, 5 featured turns with waveform and a "
                 "16 kHz clip, render, write): best and worst of `--repeat` runs; CPU time is this process's own, "
                 "wall time suffers when other jobs share the cores (load average column). \"Chromium drawn\": "
                 "headless Chromium opening the file until every chart is drawn. Target: ≤ 5 s and ≤ 15 MB at "
                 "10 000 turns. Machine: "
                 f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), Python "
                 f"{platform.python_version()}.\n\n```sh\n.venv/bin/python bench/report_size.py --browser "
                 "--readme bench/README.md   # 1 000 and 10 000 turns\n```\n\n"
                 f"{HEAD}\n{SEP}\n{MARK}\n")
        text = text.rstrip("\n") + "\n\n" + intro
    text = text.replace(MARK, "\n".join(rows_md(rows)) + "\n" + MARK, 1)
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also time headless Chromium drawing the report")
    ap.add_argument("--readme", type=Path, help="write the table into this README (e.g. bench/README.md)")
    ap.add_argument("--keep", action="store_true", help="keep the generated run folders")
    ap.add_argument("--full-plotly", action="store_true",
                    help="inline the full plotly.js bundle instead of the basic one (the before/after comparison)")
    args = ap.parse_args()
    if args.full_plotly:
        import harness.report.render as render

        render.plotly_bundle_for = lambda figs: "full"
    work = Path(tempfile.mkdtemp(prefix="vlh-report-bench-"))
    rows = []
    try:
        for n in args.turns:
            r = bench(n, args.repeat, args.browser, work) | ({"full_plotly": True} if args.full_plotly else {})
            rows.append(r)
            print(f"{n:>6} turns: generated in {r['gen_s']:.1f} s; "
                  f"report {r['report_s']:.2f}–{r['report_s_max']:.2f} s "
                  f"(CPU {r['cpu_s']:.2f} s, load {r['load']:.1f}), {r['size_mb']:.1f} MB"
                  + (f"; Chromium drawn in {r['browser_s']:.1f} s (navigation timing: "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in r["nav"].items()) + ")" if "browser_s" in r else ""),
                  flush=True)
    finally:
        if args.keep:
            print(f"run folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join([HEAD, SEP] + rows_md(rows)))
    if args.readme:
        update_readme(args.readme, rows, args.repeat)
        print(f"table written to {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
