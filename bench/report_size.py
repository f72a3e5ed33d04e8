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
        t, nav = asyncio.run(_browser_time(out))
        row["first_s"], row["browser_s"] = t["first"], t["all"]
        # navigation timing: the file read (responseEnd), the inline scripts done (domInteractive), load event
        row["nav"] = {k: nav[k] / 1000 for k in ("responseEnd", "domInteractive", "loadEventEnd")}
    return row


# Runs in the page before its own scripts (the same for any version of report.js, so before/after compare):
# on every frame it looks at the charts — every [data-figure] box and every featured turn card — and records,
# in ms since navigation start, the first frame in which every chart in the viewport is drawn (plotly's
# .main-svg inside it) once the page's scripts have run ("first"), then scrolls one viewport down each frame in
# which what is on screen is drawn (a reader scrolling through as fast as the page lets them), and records the
# first frame in which every chart on the page is drawn ("all").
PROBE = """(function () {
  var S = window.__vlhTiming = {first: null, all: null, scroll: %s};
  function charts() {
    return Array.prototype.slice.call(document.querySelectorAll(
      '[data-figure], .turn-card:not(#turn-detail) .turn-body'));
  }
  function drawn(e) { return !!e.querySelector('.main-svg') || e.textContent === 'no data for this chart'; }
  function inView(e) { var r = e.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight; }
  function tick() {
    var now = performance.now();
    if (document.readyState !== 'loading' && window.Plotly) {
      var c = charts(), onScreen = c.filter(inView).every(drawn);
      if (S.first === null && onScreen) { S.first = now; }
      if (S.first !== null && c.every(drawn)) { S.all = now; return; }
      if (S.first !== null && S.scroll && onScreen) { window.scrollBy(0, window.innerHeight); }
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
}());"""


async def _browser_time(path: Path, scroll: bool = True) -> tuple[dict, dict]:
    """Open `path` in a fresh headless Chromium; {"first", "all"} in s since navigation start, and the
    navigation timing entry."""
    from harness.testing.browser import Chromium

    async with Chromium() as b:
        page = await b.open(path, ready=None, timeout=300, init_script=PROBE % ("true" if scroll else "false"))
        end = time.monotonic() + 300
        while not await page.evaluate("window.__vlhTiming.all !== null") and not page.console_errors():
            if time.monotonic() > end:
                raise SystemExit(f"{path}: not every chart was drawn within 300 s")
            await asyncio.sleep(0.05)
        errors = page.console_errors()
        if errors or page.foreign_requests():
            raise SystemExit(f"browser problems: {errors} {page.foreign_requests()}")
        t = await page.evaluate("window.__vlhTiming")
        nav = await page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
        return {"first": t["first"] / 1000, "all": t["all"] / 1000}, json.loads(nav)


def open_rounds(files: list[Path], rounds: int, scroll: bool) -> None:
    """Time existing report files alternately (a, b, a, b, …), so that before/after share the same minutes."""
    res: dict[Path, list] = {f: [] for f in files}
    for k in range(rounds):
        for f in files:
            load = os.getloadavg()[0]
            t, nav = asyncio.run(_browser_time(f, scroll))
            res[f].append((t["first"], t["all"], load))
            print(f"round {k + 1} {f.name}: first screen {t['first']:.2f} s, every chart {t['all']:.2f} s "
                  f"({'scrolled through' if scroll else 'no scrolling'}), domInteractive "
                  f"{nav['domInteractive'] / 1000:.2f} s, load avg {load:.1f}", flush=True)
    for f, v in res.items():
        first, every, load = (sorted(x[i] for x in v) for i in range(3))
        print(f"{f.name}: first screen median {first[len(v) // 2]:.2f} s ({first[0]:.2f}–{first[-1]:.2f}), "
              f"every chart median {every[len(v) // 2]:.2f} s ({every[0]:.2f}–{every[-1]:.2f}), "
              f"load avg {load[0]:.1f}–{load[-1]:.1f}, {f.stat().st_size / 1e6:.1f} MB")


HEAD = ("| date | turns | wall time (best) | wall time (worst) | CPU time (best) | host load avg | file size "
        "| Chromium first screen | Chromium every chart |")
SEP = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
MARK = "<!-- report_size rows -->"


def rows_md(rows: list[dict]) -> list[str]:
    day = time.strftime("%Y-%m-%d")
    return [f"| {day} | {r['turns']:,}{' (full plotly.js)' if r.get('full_plotly') else ''} | {r['report_s']:.2f} s | "
            f"{r['report_s_max']:.2f} s | {r['cpu_s']:.2f} s | "
            f"{r['load']:.1f} | {r['size_mb']:.1f} MB | "
            + (f"{r['first_s']:.2f} s | {r['browser_s']:.2f} s |" if "browser_s" in r else "– | – |") for r in rows]


def update_readme(path: Path, rows: list[dict], repeat: int) -> None:
    """Add the rows to this script's table in `path` (the section is created on first use; older rows stay)."""
    text = (path.read_text() if path.exists()
            else "# vlh benchmarks\n\nEach script in bench/ appends or refreshes its own section.\n")
    if SECTION not in text:
        intro = (f"{SECTION}\n\n`write_report` on synthetic run folders written by `harness.testing.synthetic` "
                 "through the run store (load, schema checks, summary, figures, 5 featured turns with waveform and a "
                 "16 kHz clip, render, write): best and worst of `--repeat` runs; CPU time is this process's own, "
                 "wall time suffers when other jobs share the cores (load average column). Chromium: from navigation "
                 "start to the first frame with every chart in the first viewport drawn, and with every chart "
                 "drawn while scrolling through (see PROBE in the script). Target: ≤ 5 s and ≤ 15 MB at "
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
    ap.add_argument("--open", type=Path, nargs="+", metavar="HTML",
                    help="only time these report files in Chromium, alternately (before/after in the same minutes)")
    ap.add_argument("--rounds", type=int, default=3, help="with --open: how many times each file is opened")
    ap.add_argument("--no-scroll", action="store_true",
                    help="with --open: do not scroll (every chart is then drawn by the page's idle-time drawing)")
    ap.add_argument("--full-plotly", action="store_true",
                    help="inline the full plotly.js bundle instead of the basic one (the before/after comparison)")
    args = ap.parse_args()
    if args.open:
        open_rounds(args.open, args.rounds, not args.no_scroll)
        return 0
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
                  + (f"; Chromium: first screen {r['first_s']:.2f} s, every chart (scrolled through) "
                     f"{r['browser_s']:.2f} s (navigation timing: "
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
