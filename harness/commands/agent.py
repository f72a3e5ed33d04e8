"""`vlh agent`: run the reference voice agent (WebRTC, ground-truth log). The default target of `vlh run`.

Prints the agent's URL as the first line on stdout (and writes the port to `--port-file`), then serves until
interrupted (SIGINT/SIGTERM). With `--audio-in DEV --audio-out DEV` it runs the same pipeline on sound devices
instead (harness/agent/device.py): no HTTP server, one call for the process's lifetime, telemetry to
`--telemetry-file`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import typing
from pathlib import Path

from harness.errors import VlhError

DEFAULT_PROFILE = "typical"  # the profile `vlh run` starts the agent with; `vlh agent` alone runs the same
LIST_KNOBS = {"transcripts": "--transcript", "responses": "--response"}


def _flag(name: str) -> str:
    return LIST_KNOBS.get(name, "--" + name.replace("_", "-"))


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _add_knobs(p: argparse.ArgumentParser) -> None:
    from harness.agent.config import AgentConfig, build_config

    groups = {
        "endpointing": p.add_argument_group("endpointing (webrtcvad on the received audio)"),
        "pipeline": p.add_argument_group("simulated STT and LLM, real espeak-ng TTS"),
        "network": p.add_argument_group("network impairment (in-process)"),
        "telemetry": p.add_argument_group("telemetry on the data channel"),
        "calls": p.add_argument_group("calls"),
    }

    def group(name: str):
        if name.startswith(("vad_", "speech_", "endpoint_")):
            return groups["endpointing"]
        if name.startswith(("net_", "in_")) or name == "seed":
            return groups["network"]
        if name.startswith(("telemetry", "clock_")):
            return groups["telemetry"]
        if name in ("idle_timeout_s", "workers_per_agent", "turn_cpu_ms"):
            return groups["calls"]
        return groups["pipeline"]

    defaults = build_config(DEFAULT_PROFILE)  # what the agent runs with when no --profile is given, as `vlh run`
    for name, field in AgentConfig.model_fields.items():
        desc = field.description or ""
        default = getattr(defaults, name)
        if default is None:
            default = "unset"
        g = group(name)
        ann = field.annotation
        origin = typing.get_origin(ann)
        if name == "telemetry":
            g.add_argument("--telemetry", dest=name, metavar="DIALECTS", default=None, action="append",
                           help=f"{desc}: 'vlh,rtvi', 'vlh', 'rtvi' or 'none' (repeatable) "
                                f"[default: {','.join(default)}]")
        elif name in LIST_KNOBS:
            g.add_argument(_flag(name), "--" + name, dest=name, action="append", metavar="TEXT", default=None,
                           help=f"{desc}; repeat the flag for several turns")
        elif ann is bool:
            g.add_argument(_flag(name), dest=name, type=_bool, metavar="true|false", default=None,
                           help=f"{desc} [default: {str(default).lower()}]")
        elif origin is typing.Literal:
            choices = typing.get_args(ann)
            g.add_argument(_flag(name), dest=name, type=type(choices[0]), choices=choices, default=None,
                           help=f"{desc} [default: {default}]")
        else:
            base = int if ann in (int, int | None) else float if ann in (float, float | None) else str
            g.add_argument(_flag(name), dest=name, type=base, default=None, metavar="N" if base is not str else "S",
                           help=f"{desc} [default: {default}]")


def register(subparsers) -> None:
    from harness.agent.profiles import builtin_profiles

    profiles = "\n".join(f"  {n:<13} {d}" for n, d in builtin_profiles().items())
    p = subparsers.add_parser(
        "agent",
        help="run the reference voice agent (WebRTC, ground-truth log): the default target of `vlh run`; "
             "--audio-in/--audio-out: the same agent on sound devices; --ws-telephony: on a phone media stream",
        description="The reference voice agent: real WebRTC (POST /api/offer, pipecat SmallWebRTC-compatible), "
        "webrtcvad endpointing, simulated STT/LLM timing, real TTS audio (espeak-ng, flite, festival or recorded "
        "WAV files: --tts-engine), in-process network impairment, vlh + RTVI telemetry on a skewable clock, and a "
        "JSONL ground-truth log — or the same pipeline on sound devices (--audio-in and --audio-out) or on a phone "
        "provider's media-stream WebSocket (--ws-telephony), with telemetry to --telemetry-file. Every value below "
        "overrides the profile; units are in each knob's name and help.",
        epilog=f"built-in profiles (--profile NAME, or a YAML file of knob: value):\n{profiles}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1]")
    p.add_argument("--port", type=int, default=7860, help="TCP port; 0 = any free port [default: 7860]")
    p.add_argument("--port-file", metavar="FILE", help="write the chosen port to FILE once listening")
    p.add_argument("--profile", metavar="NAME|FILE", default=DEFAULT_PROFILE,
                   help="a built-in profile (see below) or a YAML file; the defaults shown are this profile's "
                   f"[default: {DEFAULT_PROFILE}]")
    p.add_argument("--truth-log", metavar="FILE", help="append the ground truth (JSONL, one record per turn) to FILE")
    p.add_argument("--packet-log", metavar="FILE",
                   help="append one JSONL record per RTP media packet (both directions) to FILE")
    p.add_argument("--nice", type=int, default=-10, metavar="N",
                   help="run at this scheduling nice value (−20…19) so timers keep real time on a busy machine; "
                        "ignored when not permitted [default: -10]")
    p.add_argument("--print-config", action="store_true", help="print the resulting configuration and exit")
    d = p.add_argument_group("sound devices instead of WebRTC (the loopback path, `vlh run --transport loopback`)")
    d.add_argument("--audio-in", metavar="DEVICE",
                   help="record the agent's microphone from this sounddevice input (vlh's: vlh_mic_monitor)")
    d.add_argument("--audio-out", metavar="DEVICE",
                   help="play the agent's speech into this sounddevice output (vlh's: vlh_ear)")
    d.add_argument("--telemetry-file", metavar="FILE",
                   help="write the telemetry (vlh events + RTVI, one JSON message a line, host-monotonic clock) "
                        "to FILE; with --audio-in/--audio-out or --ws-telephony (its side channel)")
    d.add_argument("--ready-file", metavar="FILE", help="write FILE once the sound devices run")
    d.add_argument("--ws-telephony", action="store_true",
                   help="serve a phone provider's media stream instead of WebRTC: ws://HOST:PORT/<any path> speaks "
                        "Twilio Media Streams (and the Telnyx, Plivo, Exotel variants); telemetry goes to "
                        "--telemetry-file (the socket carries audio only)")
    _add_knobs(p)
    p.set_defaults(func=run)


def config_from_args(args):
    from harness.agent.config import AgentConfig, build_config

    overrides = {name: getattr(args, name, None) for name in AgentConfig.model_fields}
    if overrides.get("telemetry") is not None:  # repeated and/or comma-separated
        overrides["telemetry"] = ",".join(overrides["telemetry"])
    cfg = build_config(args.profile, overrides)
    if getattr(args, "audio_in", None) or getattr(args, "audio_out", None):
        # on sound devices there is no network: the profile's network knobs do not apply (only ones given on the
        # command line are worth the agent's warning)
        net = ("net_delay_ms", "net_jitter_ms", "net_loss", "in_delay_ms", "in_jitter_ms", "in_loss")
        cfg = cfg.model_copy(update={k: AgentConfig.model_fields[k].default for k in net if overrides.get(k) is None})
    return cfg


def run(args) -> int:
    import json

    from harness.agent.server import AgentServer

    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.model_dump(), indent=2))
        return 0
    if not -20 <= args.nice <= 19:
        raise VlhError(f"--nice {args.nice}: nice values are −20 (highest priority) … 19")
    if not 0 <= args.port <= 65535:
        raise VlhError(f"--port {args.port}: a TCP port is 0…65535 (0 = any free port)")
    devices = args.audio_in or args.audio_out
    if devices and not (args.audio_in and args.audio_out):
        missing = "--audio-out" if args.audio_in else "--audio-in"
        raise VlhError(f"{missing} is missing: on sound devices the agent needs both --audio-in DEVICE (its "
                       "microphone, e.g. vlh_mic_monitor) and --audio-out DEVICE (its speaker, e.g. vlh_ear)")
    if args.ws_telephony:
        if devices:
            raise VlhError("--ws-telephony serves a WebSocket; it does not go with --audio-in/--audio-out")
        return asyncio.run(_serve_phone(cfg, args))
    if not devices and (args.telemetry_file or args.ready_file):
        raise VlhError("--telemetry-file/--ready-file go with --audio-in/--audio-out; over WebRTC the telemetry "
                       "goes on the data channel")
    from harness.devices.priority import set_nice

    set_nice(args.nice)  # before any thread starts: threads inherit it
    if devices:
        return asyncio.run(_serve_devices(cfg, args))
    server = AgentServer(cfg, host=args.host, port=args.port, truth_log=args.truth_log,
                         packet_log=args.packet_log, memory=False)
    return asyncio.run(_serve(server, args.port_file))


def _stop_event() -> asyncio.Event:
    """An event set by SIGINT/SIGTERM (in the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass
    return stop


def _write_atomic(path, text: str) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def _serve(server, port_file) -> int:
    stop = _stop_event()
    await server.start()
    try:
        await server.warm()
        if port_file:  # before the URL line: whoever reads either may use both
            _write_atomic(port_file, f"{server.port}\n")
        print(server.url, flush=True)
        print(f"vlh agent: listening on {server.url} (POST /api/offer); Ctrl-C to stop", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await server.stop()
    return 0


async def _serve_devices(cfg, args) -> int:
    from harness.agent.device import serve_devices

    ready = (lambda: _write_atomic(args.ready_file, "ready\n")) if args.ready_file else None
    return await serve_devices(cfg, audio_in=args.audio_in, audio_out=args.audio_out, truth_log=args.truth_log,
                               telemetry_file=args.telemetry_file, on_ready=ready, stop=_stop_event())


async def _serve_phone(cfg, args) -> int:
    from harness.agent.phone import serve_phone

    ready = (lambda port: _write_atomic(args.port_file, f"{port}\n")) if args.port_file else None
    return await serve_phone(cfg, host=args.host, port=args.port, truth_log=args.truth_log,
                             packet_log=args.packet_log, telemetry_file=args.telemetry_file, on_ready=ready,
                             stop=_stop_event())
