"""`vlh run`: measure a voice agent (default: the embedded reference agent) and write a run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands import checks
from harness.errors import EXIT_INTERRUPTED, VlhError, exit_codes_epilog


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="measure an agent over WebRTC (through sound devices: --transport loopback; as the phone provider: "
                   "--transport ws-telephony) and write a run "
               "folder",
        description="Speak scripted turns to a voice agent over WebRTC (or through sound devices: --transport "
                    "loopback; or as its phone provider on a media-stream WebSocket: --transport ws-telephony), record "
                    "both directions on one clock, find the end of user speech and the first agent "
                    "audio in the sound, and attribute the time between them stage by stage. With no --agent, vlh "
                    "starts its reference agent and measures it.",
        epilog=exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", metavar="URL", help="the agent's WebRTC offer URL (pipecat SmallWebRTC: "
                   "http://host:port/api/offer; a bare http://host:port gets /api/offer); with --transport "
                   "ws-telephony its media-stream WebSocket, ws://host:port/path. Default: start the reference agent "
                   "on a free local port")
    p.add_argument("--profile", default="typical", help="reference-agent profile when no --agent is given "
                   "(fast, typical, reasoning, bad-network, skewed-clock, or a YAML file) [typical]")
    p.add_argument("--agent-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a reference-agent setting, e.g. --agent-set tts_ttfb_ms=300 (repeatable; only "
                   "without --agent)")
    p.add_argument("--scenario", metavar="FILE", help="a scenario YAML file (see docs/scenarios.md)")
    p.add_argument("--turns", type=int, metavar="N", help="number of turns per call (default: the scenario's list of turns "
                   "× its repetitions, or 5 built-in short questions; with a scenario, N cycles through its list)")
    p.add_argument("--calls", type=int, default=1, metavar="N", help="concurrent calls [1]")
    p.add_argument("--out", metavar="DIR", help="run folder [reports/<timestamp>/]")
    p.add_argument("--force", action="store_true", help="write into an --out folder that already holds a run")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds to wait for a reply before the turn is "
                   "no_response [scenario's, else 10]")
    p.add_argument("--connect-timeout", type=float, default=15.0, metavar="S",
                   help="seconds to wait for the agent's answer to the WebRTC offer, and again for the media "
                   "connection to come up; past it the agent counts as unreachable (exit 3) [15]")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when turns were not answered or an SLO broke (default: exit 1)")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="extra HTTP header for signalling (repeatable); VALUE '$VAR' or 'env:VAR' reads the "
                   "environment. Header values never reach any output file")
    p.add_argument("--jitter-buffer", default="adaptive", metavar="MODE",
                   help="playout emulator: 'adaptive' (browser-like, 20 ms floor) or 'fixed:<ms>' [adaptive]")
    p.add_argument("--map-processor", action="append", default=[], metavar="NAME=STAGE",
                   help="RTVI metrics: count processor NAME (substring) as stage stt|llm_ttft|tts_ttfb")
    lb = p.add_argument_group("the loopback audio-device path (--transport loopback)")
    lb.add_argument("--transport", choices=("webrtc", "loopback", "ws-telephony"), default=None,
                    help="webrtc: call the agent over WebRTC; loopback: play into the agent's microphone and record "
                         "its speaker through sound devices (one call). With no agent given, vlh brings its "
                         "PulseAudio devices up, calibrates them if needed and starts the reference agent on "
                         "them; ws-telephony: be the phone provider on the agent's media-stream WebSocket "
                         "(--agent ws://HOST:PORT/PATH) [the scenario's transport:, else webrtc]")
    lb.add_argument("--telemetry-file", metavar="FILE",
                    help="loopback: the telemetry file an agent already running on the devices writes (vlh events "
                         "on the host clock, `vlh agent --telemetry-file`); implies --agent-running. ws-telephony: "
                         "the side-channel telemetry file of the --agent you started (docs/telephony.md)")
    lb.add_argument("--agent-running", action="store_true",
                    help="loopback: an agent already runs on the devices; do not start the reference agent")
    lb.add_argument("--mic-device", metavar="DEV", help="loopback on real sound cards: the output that feeds the "
                    "agent's microphone (with --ear-device and --agent-running)")
    lb.add_argument("--ear-device", metavar="DEV", help="loopback on real sound cards: the input that records the "
                    "agent's speaker")
    ot = p.add_argument_group("OpenTelemetry (docs/opentelemetry.md)")
    ot.add_argument("--otlp-listen", metavar="[HOST:]PORT",
                    help="receive the agent's traces: serve OTLP/HTTP POST /v1/traces here (host 127.0.0.1 unless "
                    "given) and attribute its stages from pipecat, LiveKit or GenAI spans, placed on the host clock")
    ot.add_argument("--otlp-endpoint", metavar="URL", help="after the run, send its turns as OpenTelemetry traces "
                    "to this OTLP/HTTP URL (as `vlh export otlp`)")
    ot.add_argument("--otlp-header", action="append", default=[], metavar="K=V",
                    help="a header for --otlp-endpoint (repeatable; V '$VAR' reads the environment; never written)")
    add_phone_args(p)
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON instead of a table")
    p.set_defaults(func=main)


def add_phone_args(p) -> None:
    """The ws-telephony flags (`vlh run`, `vlh load`)."""
    ph = p.add_argument_group("the phone media stream (--transport ws-telephony)")
    ph.add_argument("--provider", choices=("twilio", "telnyx", "plivo", "exotel"), default=None,
                    help="whose media-stream protocol vlh speaks [the scenario's provider:, else twilio]")
    ph.add_argument("--stream-param", action="append", default=[], metavar="KEY=VALUE",
                    help="a custom parameter of the `start` message (repeatable)")
    ph.add_argument("--pstn-ms", type=float, default=0.0, metavar="N",
                    help="a caller-side PSTN leg (ms, each way), reported apart as estimated "
                         "(ttfa_with_pstn_ms), never mixed into measured stages [0]")


def check_phone_args(phone: bool, provider, stream_params, pstn_ms: float) -> None:
    if not phone and (stream_params or pstn_ms or provider):
        raise VlhError("--provider/--stream-param/--pstn-ms go with --transport ws-telephony")
    if pstn_ms < 0:
        raise VlhError("--pstn-ms: give a number of ms ≥ 0")


def _kv(pairs: list[str], flag: str) -> dict:
    out = {}
    for raw in pairs:
        if "=" not in raw:
            raise VlhError(f"{flag} {raw!r}: expected KEY=VALUE")
        k, v = raw.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _otlp_headers(pairs: list[str]) -> dict:
    from harness.commands.export import parse_headers

    return parse_headers(pairs, "--otlp-header")


def main(args) -> int:
    from harness.measure.runner import RunConfig, run_measurement
    from harness.transports.webrtc.playout import parse_jitter_mode
    from harness.transports.webrtc.client import offer_url, parse_headers

    parse_jitter_mode(args.jitter_buffer)
    scenario = None
    if args.scenario:
        from harness.suite.scenario import load_scenario

        scenario = load_scenario(args.scenario)
    # a scenario may name its transport and phone provider; the command line wins
    args.transport = args.transport or (scenario.transport if scenario else None) or "webrtc"
    provider_flag = args.provider
    args.provider = args.provider or (scenario.provider if scenario else None) or "twilio"
    checks.positive(args.timeout, "--timeout")
    checks.positive(args.connect_timeout, "--connect-timeout")
    if args.agent and args.agent_set:
        raise VlhError("--agent-set sets the reference agent vlh starts; with an external --agent it would be "
                       "ignored: drop --agent-set, or drop --agent to measure the reference agent")
    headers = parse_headers(args.header)
    checks.credentials(args.agent, headers)
    if args.transport != "loopback":
        for flag, v in (("--telemetry-file", args.telemetry_file), ("--agent-running", args.agent_running),
                        ("--mic-device", args.mic_device), ("--ear-device", args.ear_device)):
            if v:
                if not (flag == "--telemetry-file" and args.transport == "ws-telephony"):
                    raise VlhError(f"{flag} goes with --transport loopback (over WebRTC the telemetry comes on the "
                                   "data channel and the agent is --agent URL)")
    elif args.calls != 1:
        raise VlhError(f"--calls {args.calls} with --transport loopback: the loopback devices carry one call (one "
                       "microphone, one speaker); use --calls 1, or --transport webrtc for concurrent calls")
    if args.calls < 1 or args.calls > 200:
        raise VlhError("--calls: give a number from 1 to 200")
    if args.turns is not None and args.turns < 1:
        raise VlhError("--turns: give a number ≥ 1")
    pmap = _kv(args.map_processor, "--map-processor")
    for k, v in pmap.items():
        if v not in ("stt", "llm_ttft", "tts_ttfb"):
            raise VlhError(f"--map-processor {k}={v}: the stage must be stt, llm_ttft or tts_ttfb")
    profile, overrides = args.profile, _kv(args.agent_set, "--agent-set")
    if scenario is not None and not args.agent:
        profile = args.profile if args.profile != "typical" else scenario.agent.profile
        overrides = {**scenario.agent.overrides(), **overrides}
    checks.out_dir(args.out)
    phone = args.transport == "ws-telephony"
    check_phone_args(phone, provider_flag, args.stream_param, args.pstn_ms)
    agent_url = (args.agent if phone else offer_url(args.agent)) if args.agent else None
    cfg = RunConfig(agent_url=agent_url, agent_profile=profile,
                    agent_overrides=overrides, scenario=scenario, turns=args.turns, calls=args.calls,
                    out_dir=Path(args.out) if args.out else None, timeout_s=args.timeout,
                    connect_timeout_s=args.connect_timeout, headers=headers, jitter_buffer=args.jitter_buffer, processor_map=pmap,
                    report=not args.no_report, force=args.force, transport=args.transport,
                    telemetry_file=Path(args.telemetry_file) if args.telemetry_file else None,
                    mic_device=args.mic_device, ear_device=args.ear_device, agent_running=args.agent_running,
                    otlp_listen=args.otlp_listen, otlp_endpoint=args.otlp_endpoint,
                    otlp_headers=_otlp_headers(args.otlp_header),
                    provider=args.provider, stream_params=_kv(args.stream_param, "--stream-param"),
                    pstn_ms=args.pstn_ms)
    try:
        out = run_measurement(cfg)
        partial = False
    except KeyboardInterrupt:
        out, partial = cfg.out_dir, True
        print("vlh: interrupted — finished turns are kept", file=sys.stderr)
    if out is None:
        return EXIT_INTERRUPTED
    meta = json.loads((Path(out) / "run.json").read_text())
    code, why = checks.run_exit_code(meta, args.allow_failures)
    if args.json:
        print(json.dumps({"run_dir": str(out), "partial": partial, "exit_code": EXIT_INTERRUPTED if partial else code,
                          "summary": meta.get("summary")}, indent=1))
    else:
        print_summary(meta, Path(out))
    if partial:
        return EXIT_INTERRUPTED
    if why:
        print(f"vlh: {why}", file=sys.stderr)
    return code


def print_summary(meta: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    s = meta.get("summary", {})
    con = Console()
    t = Table(title=f"vlh run {meta.get('run_id')} — {s.get('turns', 0)} turns: "
                    f"{checks.status_words(s.get('status_counts') or {})}")
    t.add_column("ms")
    for p in ("p50", "p90", "p95", "p99", "max"):
        t.add_column(p, justify="right")
    for key, label in (("ttfa_ms", "TTFA at the ear"), ("provider_ttft_ms", "provider TTFT"),
                       ("gap_ms", "the gap")):
        q = s.get(key)
        t.add_row(label, *([f"{q[p]:.0f}" for p in ("p50", "p90", "p95", "p99", "max")] if q else ["–"] * 5))
    con.print(t)
    stages = s.get("stages_p50_ms") or {}
    if stages:
        st = Table(title="median stage breakdown")
        st.add_column("stage")
        st.add_column("p50 ms", justify="right")
        for k, v in stages.items():
            st.add_row(k, f"{v:.1f}")
        con.print(st)
    con.print(f"run folder: {out}")
    if (out / "report.html").exists():
        con.print(f"report: {out / 'report.html'}")
