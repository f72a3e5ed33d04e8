"""`vlh suite DIR`: run a scenario suite, keep the history, flag regressions, write JUnit (docs/suite.md)."""

from __future__ import annotations

import sys

import argparse

from harness.errors import VlhError, exit_codes_epilog


def register(sub) -> None:
    p = sub.add_parser(
        "suite", help="run a scenario suite, keep history, flag regressions, write JUnit and the suite report",
        description="Run every scenario in DIR (each into its own run folder), append the turns to the history, "
                    "compare tonight with the last N nights per scenario (Mann–Whitney U per metric and stage, "
                    "bootstrap CI of the p50/p95 shift) and judge the SLOs. The suite folder gets verdicts.json, "
                    "junit.xml and report.html (headlines, trends over the nights, SLO verdicts, regressions "
                    "naming the stage that moved; `vlh report SUITE_DIR` rewrites it). Exit 0: all green; 1: an SLO breach "
                    "or a regression; 2: bad usage, or a harness or agent error; 3: the agent could not be reached "
                    "in any scenario that errored.",
        epilog=exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", nargs="?", help="directory of scenario files [the built-in nightly set, "
                   "harness/suite/scenarios/nightly]")
    p.add_argument("--agent", metavar="URL", help="the agent's WebRTC offer URL; default: the reference agent "
                   "started per scenario with the scenario's agent: profile")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="extra HTTP header for signalling (repeatable; '$VAR' or 'env:VAR' reads the environment); "
                   "never written anywhere")
    p.add_argument("--history", metavar="PATH", default="reports/history",
                   help="history directory (Parquet dataset) [reports/history]")
    p.add_argument("--baseline", metavar="N", type=int, default=7, help="compare with the last N nights [7]")
    p.add_argument("--junit", metavar="FILE", help="JUnit XML output [<suite folder>/junit.xml]")
    p.add_argument("--min-effect-ms", metavar="X", type=float, default=50.0,
                   help="a regression must move the median by at least X ms (0: off) [50]")
    p.add_argument("--min-effect-pct", metavar="P", type=float, default=10.0,
                   help="... and by at least P %% of the baseline median (0: off) [10]")
    p.add_argument("--alpha", metavar="A", type=float, default=0.01,
                   help="significance level after the Holm correction [0.01]")
    p.add_argument("--max-harness-stall-ms", metavar="MS", type=float, default=50.0,
                   help="leave out turns timed while vlh's own event loop stalled (or its mic frames left late) by "
                   "more than MS; over half of a run's turns: the scenario is a harness error [50]")
    p.add_argument("--out", metavar="DIR", default="reports/suites",
                   help="parent of the suite folder <DIR>/<suite-id>/ (run folders, verdicts.json) [reports/suites]")
    p.add_argument("--night", metavar="YYYY-MM-DD",
                   help="the night to file this suite under (default: today's UTC date); for back-filling and tests")
    p.add_argument("--no-report", action="store_true", help="do not write each run's report.html (faster; the suite's own report.html is "
                   "always written)")
    p.set_defaults(func=main)


def main(args) -> int:
    from harness.suite.regress import Policy
    from harness.suite.nightly import run_suite

    if args.min_effect_ms < 0 or args.min_effect_pct < 0:
        raise VlhError("--min-effect-ms/--min-effect-pct: give a number ≥ 0 (0 switches that threshold off)")
    if not 0 < args.alpha < 1:
        raise VlhError(f"--alpha {args.alpha}: give a number between 0 and 1, e.g. 0.01")
    if args.baseline < 1:
        raise VlhError(f"--baseline {args.baseline}: give a number of nights ≥ 1")
    headers = {}
    if args.header:
        from harness.transports.webrtc.client import parse_headers

        headers = parse_headers(args.header)
    from harness.commands import checks

    checks.credentials(args.agent, headers)
    agent = args.agent
    if agent:
        from harness.transports.webrtc.client import offer_url

        agent = offer_url(agent)
    if args.max_harness_stall_ms <= 0:
        raise VlhError("--max-harness-stall-ms: give a number of ms > 0")
    policy = Policy(alpha=args.alpha, min_effect_ms=args.min_effect_ms, min_effect_pct=args.min_effect_pct,
                    max_harness_stall_ms=args.max_harness_stall_ms)
    if args.dir is None:
        from harness.suite.builtin import builtin_path

        args.dir = str(builtin_path("nightly"))
    result = run_suite(args.dir, history=args.history, out_dir=args.out, agent_url=agent, baseline=args.baseline,
                       policy=policy, junit_path=args.junit, night=args.night, headers=headers,
                       run_reports=not args.no_report,
                       echo=lambda s: print(s, flush=True))
    code = result.exit_code
    word = {0: "green", 1: "RED (SLO breach or regression)", 2: "ERROR (harness or agent)",
            3: "ERROR (agent unreachable)"}[code]
    report = result.suite_dir / "report.html"
    print(f"suite {result.suite_id}: {word}; verdicts {result.verdicts_path}; JUnit {result.junit_path}"
          + (f"; report {report}" if report.is_file() else ""), file=sys.stdout)
    return code
