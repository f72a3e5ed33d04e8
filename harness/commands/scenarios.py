"""`vlh scenarios validate DIR`: check scenario files before a suite runs them."""

from __future__ import annotations

from harness.errors import VlhError


def register(sub) -> None:
    p = sub.add_parser("scenarios", help="check scenario files",
                       description="Scenario files (see docs/scenarios.md).")
    ssub = p.add_subparsers(dest="scenarios_command", metavar="ACTION")
    v = ssub.add_parser("validate", help="validate every *.yaml in DIR (or one FILE)",
                        description="Check every scenario file in DIR: each problem is reported as "
                                    "file:line: field: problem (allowed: …). Exit 0 when all are valid, 2 otherwise.")
    v.add_argument("path", metavar="DIR", help="a directory of scenario files, or one file")
    v.set_defaults(func=validate)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p) -> int:
    p.print_help()
    return 2


def validate(args) -> int:
    from harness.suite.scenario import load_scenarios

    scenarios = load_scenarios(args.path)  # VlhError → "vlh: error: …", exit 2
    if not scenarios:  # pragma: no cover - load_scenarios refuses an empty directory
        raise VlhError(f"{args.path}: no scenarios")
    width = max(len(s.name) for s in scenarios)
    for s in scenarios:
        slo = ", ".join(f"{k} {v:g}" for k, v in s.slo.thresholds().items()) or "no SLOs"
        extra = " barge-in" if s.barge_in else ""
        print(f"ok  {s.name:<{width}}  {len(s.turns)} turn(s) × {s.repetitions}{extra}; agent {s.agent.profile}"
              f"{' ' + str(s.agent.overrides()) if s.agent.overrides() else ''}; {slo}  ({s.source.name})")
    print(f"{len(scenarios)} scenario file(s) valid")
    return 0
