"""`vlh load`: many concurrent vlh calls on Locust (master + workers), gathered into one run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import VlhError, exit_codes_epilog


def register(sub) -> None:
    p = sub.add_parser(
        "load", help="load test on Locust: N concurrent callers, every turn measured at the ear, one run folder",
        description="Run Locust users that each make vlh calls (one call per task, its turns fired as Locust "
                    "requests: response time = TTFA at the ear) against the agent; Locust prints its stats, and the "
                    "exact turns of every worker are gathered into one run folder that `vlh report` reads. With no "
                    "--agent, vlh starts its reference agent. See docs/load.md.",
        epilog=exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", metavar="FILE", help="scenario YAML (the turns of each call) [5 built-in questions]")
    p.add_argument("--turns", type=int, metavar="N", help="turns per call (cycles through the scenario's list)")
    p.add_argument("--users", type=int, default=1, metavar="N", help="concurrent callers (Locust users) [1]")
    p.add_argument("--spawn-rate", type=float, default=1.0, metavar="R", help="callers started per second [1]")
    p.add_argument("--run-time", default="60s", metavar="T",
                   help="how long new calls start (e.g. 20s, 5m); calls under way then finish [60s]")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--workers", type=int, default=1, metavar="K",
                      help="local Locust worker processes, each with its own call engine [1]")
    mode.add_argument("--master", action="store_true",
                      help="run only the Locust master here; start workers elsewhere with --worker (the run "
                           "folder --out must be a path the workers see too); --expect-workers K")
    mode.add_argument("--worker", action="store_true", help="run one Locust worker here (with --master-host)")
    p.add_argument("--expect-workers", type=int, default=1, metavar="K", help="--master: workers to wait for [1]")
    p.add_argument("--master-host", default="127.0.0.1", metavar="H", help="--worker: the master's host")
    p.add_argument("--master-port", type=int, default=5557, metavar="P", help="--master/--worker: port [5557]")
    p.add_argument("--web", action="store_true",
                   help="Locust's web UI (http://127.0.0.1:8089) instead of headless, open while the run lasts")
    p.add_argument("--transport", choices=("webrtc", "ws-telephony"), default=None,
                   help="how each call reaches the agent: webrtc (SmallWebRTC offer URL) or ws-telephony (vlh plays "
                        "the phone provider on the agent's media-stream WebSocket) [the scenario's transport:, else "
                        "webrtc]")
    p.add_argument("--agent", metavar="URL", help="the agent: its WebRTC offer URL, or with --transport ws-telephony "
                                                  "its ws://HOST:PORT/PATH [the reference agent]")
    p.add_argument("--profile", default="typical", help="reference-agent profile [typical]")
    p.add_argument("--agent-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a reference-agent setting (repeatable)")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="HTTP header for signalling; '$VAR' is read from each worker's environment")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds to wait for a reply [scenario's, else 10]")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when turns were not answered or an SLO broke (default: exit 1; an agent no call "
                        "reached still exits 3)")
    p.add_argument("--jitter-buffer", default="adaptive", metavar="MODE", help="playout emulator [adaptive]")
    p.add_argument("--stop-timeout", type=float, metavar="S",
                   help="at the end, seconds a call under way may take to finish [the longest call can take]")
    from harness.commands.run import add_phone_args

    add_phone_args(p)
    cap = p.add_argument_group("capacity search (--find-capacity)")
    cap.add_argument("--find-capacity", action="store_true",
                     help="step the concurrent calls up (--steps), each held --step-time, stop at the first step "
                          "that breaks an SLO; report the largest level that met every SLO, with a confidence "
                          "statement")
    cap.add_argument("--slo", metavar="NAME=LIMIT,…", help="e.g. ttfa_p95_ms=1500,no_response_rate=0.01 "
                     "[the scenario's slo:]")
    cap.add_argument("--steps", default="1,2,4,8,12,16", metavar="N,N,…", help="concurrent calls per step "
                     "[1,2,4,8,12,16]")
    cap.add_argument("--step-time", default="60s", metavar="T", help="how long each step starts new calls [60s]")
    p.add_argument("--out", metavar="DIR", help="run folder [reports/<timestamp>/]")
    p.add_argument("--force", action="store_true", help="write into an --out folder that already holds a run")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=main)


def parse_duration(text: str) -> float:
    """'20s', '5m', '1h30m', '90' → seconds."""
    import re

    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
    if not parts or "".join(a + b for a, b in parts) != t:
        raise VlhError(f"--run-time {text!r}: give a duration like 20s, 5m or 1h30m")
    return sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts)


def build_config(args):
    from harness.commands.run import _kv, check_phone_args
    from harness.load.session import LoadConfig
    from harness.transports.webrtc.client import offer_url, parse_headers
    from harness.transports.webrtc.playout import parse_jitter_mode

    parse_jitter_mode(args.jitter_buffer)
    parse_headers(args.header)  # a bad header or a missing variable: one line now, not in every worker
    if args.users < 1 or args.users > 1000:
        raise VlhError("--users: give a number from 1 to 1000")
    if args.spawn_rate <= 0:
        raise VlhError("--spawn-rate: give a positive number of callers per second")
    if args.workers < 1 or args.workers > 64:
        raise VlhError("--workers: give a number from 1 to 64")
    scenario = None
    if args.scenario:
        from harness.suite.scenario import load_scenario

        scenario = load_scenario(args.scenario)
    profile, overrides = args.profile, _kv(args.agent_set, "--agent-set")
    if scenario is not None and not args.agent:
        profile = args.profile if args.profile != "typical" else scenario.agent.profile
        overrides = {**scenario.agent.overrides(), **overrides}
    role = "master" if args.master else "worker" if args.worker else "local"
    transport = args.transport or (scenario.transport if scenario else None) or "webrtc"
    if transport == "loopback":
        raise VlhError("vlh load: the scenario's transport is loopback — sound devices carry one call at a time; "
                       "give --transport webrtc or ws-telephony")
    phone = transport == "ws-telephony"
    check_phone_args(phone, args.provider, args.stream_param, args.pstn_ms)
    agent_url = None
    if args.agent:
        agent_url = args.agent if phone else offer_url(args.agent)
    return LoadConfig(scenario=scenario, scenario_path=str(Path(args.scenario).resolve()) if args.scenario else None,
                      turns=args.turns, users=args.users, spawn_rate=args.spawn_rate,
                      run_time_s=parse_duration(args.run_time),
                      workers=args.expect_workers if args.master else args.workers, role=role,
                      master_host=args.master_host, master_port=args.master_port, web=args.web,
                      agent_url=agent_url, agent_profile=profile,
                      agent_overrides=overrides, header_specs=list(args.header), timeout_s=args.timeout,
                      jitter_buffer=args.jitter_buffer, out_dir=Path(args.out) if args.out else None,
                      force=args.force, report=not args.no_report, stop_timeout_s=args.stop_timeout,
                      transport=transport,
                      provider=args.provider or (scenario.provider if scenario else None) or "twilio",
                      stream_params=_kv(args.stream_param, "--stream-param"), pstn_ms=args.pstn_ms)


def exit_code(meta: dict, allow_failures: bool = False) -> tuple[int, str | None]:
    """(exit code, one line saying why not 0), as `vlh run`: 3 when no call reached the agent (every turn an
    `error:connect`), else 0 when every turn was answered and every SLO met, 1 when not (0 with
    `allow_failures`); a capacity search: 1 when no level met the SLOs."""
    from harness.commands.checks import run_exit_code
    from harness.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE

    counts = meta.get("summary", {}).get("status_counts", {})
    if counts and set(counts) == {"error:connect"}:
        return EXIT_UNREACHABLE, (f"no call reached the agent ({counts['error:connect']} turns error:connect; their "
                                  "reasons are in the run folder's turns.csv, column `error`)")
    cap = meta.get("capacity")
    if cap is not None:
        if cap.get("capacity") or allow_failures:
            return EXIT_OK, None
        return EXIT_FAILED, "no level of concurrent calls met the SLOs (exit 1; --allow-failures exits 0)"
    return run_exit_code(meta, allow_failures)


def main(args) -> int:
    from harness.load.session import run_load, run_worker

    from harness.load.session import check_transport

    cfg = build_config(args)
    check_transport(cfg)
    if cfg.role == "worker":
        return run_worker(cfg)
    if args.find_capacity:
        from harness.load.capacity import find_capacity, parse_slo

        if args.slo:
            thresholds = parse_slo(args.slo)
        elif cfg.scenario is not None and cfg.scenario.slo.thresholds():
            thresholds = cfg.scenario.slo.thresholds()
        else:
            raise VlhError("--find-capacity needs SLOs: --slo ttfa_p95_ms=1500,no_response_rate=0.01 (or a "
                           "scenario with slo:)")
        try:
            steps = [int(x) for x in args.steps.split(",") if x.strip()]
        except ValueError:
            raise VlhError(f"--steps {args.steps!r}: give whole numbers of calls, e.g. 1,2,4,8") from None
        if not steps or any(n < 1 for n in steps) or steps != sorted(steps):
            raise VlhError(f"--steps {args.steps!r}: give rising numbers of calls ≥ 1, e.g. 1,2,4,8")
        out = find_capacity(cfg, thresholds, steps, parse_duration(args.step_time))
    else:
        out = run_load(cfg)
    meta = json.loads((Path(out) / "run.json").read_text())
    if args.json:
        print(json.dumps({"run_dir": str(out), "summary": meta.get("summary"), "slo": meta.get("slo")}, indent=1))
    else:
        from harness.commands.run import print_summary

        print_summary(meta, Path(out))
        for s in meta.get("slo") or []:
            print(("SLO met:   " if s["passed"] else "SLO BROKE: ") + s["detail"], file=sys.stderr)
    code, why = exit_code(meta, args.allow_failures)  # the meaning `vlh run` gives them
    if why:
        print(f"vlh: {why}", file=sys.stderr)
    return code
