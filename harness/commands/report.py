"""`vlh report RUN_DIR [RUN_DIR ...] [-o FILE] [--force]`: the self-contained HTML attribution report.

One run folder: its report (default RUN_DIR/report.html, refreshed in place). Several: a comparison against the
first (default ./reports/compare-<timestamp>.html). A suite folder (one holding verdicts.json, written by
`vlh suite`): the suite report (default SUITE_DIR/report.html). An explicit -o FILE that exists is kept unless
--force.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.errors import VlhError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="HTML attribution report of a run (several runs: a comparison; a suite folder: the "
        "suite report)",
        description="Writes one self-contained HTML file (opens offline): headline TTFA at the ear vs provider TTFT, "
        "the stage-by-stage attribution, distributions, the worst/median/best turns with their sound, anomalies "
        "and health. With several run folders: each headline side by side and whether the differences are "
        "significant (Mann-Whitney U, bootstrap CI), naming the stage that moved; the first folder is the baseline. "
        "With a suite folder (written by `vlh suite`, it holds verdicts.json): the suite report — per scenario "
        "tonight's headline, the trend of TTFA p50/p95 over the nights in the history, the SLO verdicts, the "
        "regressions naming the stage that moved, and links to each run's report.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run folder(s) written by `vlh run`, or one suite folder written by `vlh suite`")
    p.add_argument("-o", "--out", metavar="FILE",
                   help="output file (default: RUN_DIR/report.html or SUITE_DIR/report.html, or "
                   "reports/compare-<timestamp>.html)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=run)


def default_out(runs: list[Path]) -> Path:
    if len(runs) == 1:
        return runs[0] / "report.html"
    return Path("reports") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.html"


def run(args) -> int:
    from harness.report.render import write_report
    from harness.report.suite import is_suite_dir, write_suite_report

    runs = [Path(r) for r in args.runs]
    suites = [r for r in runs if is_suite_dir(r)]
    if suites and len(runs) > 1:
        raise VlhError(f"{suites[0]}: is a suite folder (verdicts.json); give it alone for the suite report, or "
                       "give run folders (e.g. SUITE_DIR/runs/<scenario>) to compare runs")
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            raise VlhError(f"{out}: already exists; use --force to overwrite it, or choose another -o FILE")
    else:
        out = default_out(runs)
        if len(runs) > 1 and out.exists() and not args.force:
            raise VlhError(f"{out}: already exists; use --force to overwrite it, or give -o FILE")
    t = time.perf_counter()
    path = write_suite_report(runs[0], out) if suites else write_report(runs, out)
    size = path.stat().st_size / 1e6
    print(f"vlh: report written to {path} ({size:.1f} MB, {time.perf_counter() - t:.1f} s)")
    return 0
