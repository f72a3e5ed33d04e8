"""`vlh loopback up | down | status | calibrate`: the PulseAudio null-sink devices of the audio-device path.

up         start (or reuse) PulseAudio, create the 48 kHz null sinks vlh_mic and vlh_ear, define their ALSA PCMs
down       remove what `up` created (kept while another process still holds the devices, unless --force)
status     the daemon, the sinks, the devices as sounddevice sees them, the stored calibration
calibrate  the device path's own latency: 20 fresh sessions, cross-correlation, mean/stdev; stored and reported
"""

from __future__ import annotations

import asyncio
import json
import os

from harness.errors import VlhError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "loopback", help="PulseAudio null-sink devices for the audio-device path (up/down/status/calibrate)",
        description="The loopback audio-device path: two PulseAudio null sinks at 48 kHz — vlh_mic (the harness "
        "plays into it; the agent records vlh_mic.monitor) and vlh_ear (the agent plays into it; the harness records "
        "vlh_ear.monitor) — reached by sounddevice through ALSA 'pulse' PCMs defined in a vlh-owned file. "
        "Works as root and without a sound card; PulseAudio is started in user mode when none is running.")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where vlh keeps the loopback state, ALSA file and calibration "
                        "(default $VLH_STATE_DIR, else $XDG_STATE_HOME/vlh, else ~/.local/state/vlh)")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    up = sub.add_parser("up", help="create the devices (idempotent)")
    up.add_argument("--private", action="store_true",
                    help="always start vlh's own PulseAudio daemon, even if one is already running")
    down = sub.add_parser("down", help="remove what `up` created")
    down.add_argument("--force", action="store_true", help="also when other processes still hold the devices")
    st = sub.add_parser("status", help="list the devices as sounddevice sees them")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    cal = sub.add_parser("calibrate", help="measure the device path latency (mean, stdev) and store it",
                         description="Plays a chirp through each path in fresh sessions and finds it in the "
                         "recording by cross-correlation. Null sinks: the mic path (vlh_mic → vlh_mic.monitor) and "
                         "the ear path (vlh_ear → vlh_ear.monitor, what ch1 is corrected by). Real sound cards "
                         "(--mic-device/--ear-device): connect the mic output to the ear input with a cable.")
    cal.add_argument("--reps", type=int, default=20, help="repetitions (default 20)")
    cal.add_argument("--latency", type=float, default=None, metavar="S",
                     help="PortAudio suggested latency in seconds (default 0.05; runs must use the same)")
    cal.add_argument("--mic-device", metavar="DEV", help="a real output device to play into (instead of vlh_mic)")
    cal.add_argument("--ear-device", metavar="DEV", help="a real input device to record (instead of vlh_ear.monitor)")
    cal.add_argument("--drift", type=float, default=0.0, metavar="S",
                     help="also run one session of S seconds with a chirp every 5 s: does the latency move?")
    cal.add_argument("--no-save", action="store_true", help="report only, keep the stored calibration")
    cal.add_argument("--json", action="store_true", help="machine-readable output")
    actions = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "calibrate": cmd_calibrate}

    def dispatch(args) -> int:
        if not args.action:
            p.print_help()
            return 2
        return actions[args.action](args)

    p.set_defaults(func=dispatch)


def _env_lines(sdir) -> list[str]:
    from harness.devices import pulse

    env = pulse.child_env(sdir, base={})
    return [f"export {k}={env[k]}" for k in ("ALSA_CONFIG_PATH", "PULSE_SERVER") if k in env]


def cmd_up(args) -> int:
    from harness.devices import pulse

    st = pulse.up(args.state_dir, reuse_running=not args.private)
    how = (f"started PulseAudio (pid {st.get('daemon_pid')})" if st.get("started_daemon")
           else "using the running PulseAudio")
    print(f"vlh: loopback devices up — {how} at {st['server']}")
    d = pulse.DEVICES
    print(f"  harness plays into {d.mic_play!r}; the agent records {d.mic_record!r} (its microphone)")
    print(f"  the agent plays into {d.ear_play!r}; the harness records {d.ear_record!r} (the user's ear)")
    print("  other processes see the devices with:")
    for line in _env_lines(args.state_dir):
        print(f"    {line}")
    print("  plain PulseAudio clients: PULSE_SOURCE=vlh_mic.monitor PULSE_SINK=vlh_ear")
    return 0


def cmd_down(args) -> int:
    from harness.devices import pulse

    res = pulse.down(args.state_dir, force=args.force)
    if not res["was_up"]:
        print("vlh: loopback devices were not up; nothing to do")
    elif res["kept_for"]:
        print(f"vlh: loopback devices kept: still held by {', '.join(res['kept_for'])} (use --force to remove)")
    else:
        print("vlh: loopback devices down; removed: " + (", ".join(res["removed"]) or "nothing left"))
    return 0


def cmd_status(args) -> int:
    from harness.transports.loopback import stored
    from harness.devices import pulse

    st = pulse.status(args.state_dir)
    devices = []
    before = os.environ.get("ALSA_CONFIG_PATH")
    try:
        if st["up"] and (pulse.state_dir(args.state_dir) / pulse.ALSA_FILE).exists():
            pulse.activate(args.state_dir)
        import sounddevice as sd

        devices = [{"index": i, "name": d["name"], "inputs": d["max_input_channels"],
                    "outputs": d["max_output_channels"], "default_rate": d["default_samplerate"]}
                   for i, d in enumerate(sd.query_devices())]
    except OSError as exc:  # PortAudio library missing
        st["problems"].append(f"sounddevice unavailable: {exc}")
    finally:  # leave the process as it was (status may run inside a longer-lived program)
        if os.environ.get("ALSA_CONFIG_PATH") != before:
            if before is None:
                os.environ.pop("ALSA_CONFIG_PATH", None)
            else:
                os.environ["ALSA_CONFIG_PATH"] = before
            pulse.reinit_portaudio()
    cal = stored.load(state_dir=args.state_dir)
    st["sounddevice"] = devices
    st["calibration"] = cal.brief() if cal else None
    if args.json:
        print(json.dumps(st, indent=1, default=str))
        return 0 if not st["problems"] else 1
    if not st["up"]:
        print(f"vlh: loopback devices are down (state dir {st['state_dir']}); `vlh loopback up` creates them")
    else:
        s = st["state"]
        how = (f"vlh started PulseAudio, pid {s.get('daemon_pid')}" if s.get("started_daemon")
               else "reused PulseAudio")
        print(f"vlh: loopback devices up at {s.get('server')} ({how}); "
              f"held by {', '.join(s.get('leases', [])) or 'nobody'}")
        for name, info in st["sinks"].items():
            print(f"  sink {name}: {info['spec']}, {info['state']}")
        for line in _env_lines(args.state_dir):
            print(f"  {line}")
    print("sound devices (sounddevice):" if devices else "sound devices: none")
    for d in devices:
        kind = "/".join(k for k, n in (("in", d["inputs"]), ("out", d["outputs"])) if n)
        print(f"  {d['index']:2d} {d['name']} ({kind})")
    if cal:
        b = cal.brief()
        for k in ("mic_path", "ear_path"):
            if b[k]:
                print(f"calibration {k}: {b[k]['mean_ms']:.3f} ms ± {b[k]['stdev_ms']:.3f} ms (n={b[k]['n']}, "
                      f"{b['created_utc']})")
    else:
        print("calibration: none (`vlh loopback calibrate`)")
    for p in st["problems"]:
        print(f"problem: {p}")
    return 0 if not st["problems"] else 1


def cmd_calibrate(args) -> int:
    from harness.transports.loopback import calibrate, stored
    from harness.devices import pulse
    from harness.transports.loopback.call import LoopbackDevices
    from harness.devices.stamped import DEFAULT_LATENCY

    if args.reps < 2:
        raise VlhError(f"--reps {args.reps}: need at least 2 repetitions for a standard deviation")
    latency = DEFAULT_LATENCY if args.latency is None else args.latency
    if not 0.005 <= latency <= 1.0:
        raise VlhError(f"--latency {latency}: give seconds between 0.005 and 1")
    if bool(args.mic_device) != bool(args.ear_device):
        raise VlhError("--mic-device and --ear-device go together "
                       "(real sound cards: mic output → cable → ear input)")
    lease = None
    if args.mic_device:
        devices = LoopbackDevices.real(args.mic_device, args.ear_device)
    else:
        devices = LoopbackDevices()
        lease = pulse.process_lease()  # brings the devices up (or repairs them) for the calibration's duration
        pulse.up(args.state_dir, lease=lease)
    try:
        def progress(i, n, r):
            if not args.json:
                parts = [f"{k[:-3]} {r[k]:.3f} ms" for k in ("mic_ms", "ear_ms") if r.get(k) is not None]
                flag = "  (discontinuity)" if r["glitches"] else ""
                print(f"  {i:2d}/{n}: {', '.join(parts)}{flag}", flush=True)

        cal = asyncio.run(calibrate.calibrate(devices, reps=args.reps, latency=latency, state_dir=args.state_dir,
                                              save=not args.no_save, progress=progress))
        drift = None
        if args.drift > 0:
            if not args.json:
                print(f"drift: one session of {args.drift:.0f} s ...", flush=True)
            drift = asyncio.run(calibrate.measure_drift(args.drift, devices=devices, latency=latency,
                                                        state_dir=args.state_dir))
    finally:
        if lease:
            pulse.down(args.state_dir, lease=lease)
    if args.json:
        out = {"calibration": json.loads(cal.to_json()), "drift": drift,
               "saved_to": None if args.no_save else str(stored.default_path(args.state_dir))}
        print(json.dumps(out, indent=1))
        return 0
    for k, label in (("mic_path", "mic path (vlh_mic → vlh_mic.monitor)"),
                     ("ear_path", "ear path (agent write → harness recording)" if cal.mode == "null-sink"
                      else "round trip (mic device → cable → ear device)")):
        p = getattr(cal, k)
        if p:
            print(f"{label}: mean {p.mean_ms:.3f} ms, stdev {p.stdev_ms:.3f} ms, min {p.min_ms:.3f}, "
                  f"max {p.max_ms:.3f} (n={p.n})")
    for r in cal.left_out:
        print(f"left out: session {r['attempt']} ({r['why']})")
    if drift:
        for k in ("mic", "ear"):
            if f"{k}_trend_ms_per_min" in drift:
                print(f"drift, {k} path over {drift['seconds']:.0f} s: "
                      f"trend {drift[f'{k}_trend_ms_per_min']:+.4f} ms/min, span {drift[f'{k}_span_ms']:.3f} ms")
        print("stream clocks vs host: " + ", ".join(f"{k} {v:+.2f} ppm"
                                                    for k, v in drift["stream_drift_ppm"].items()))
        n = sum(len(v) for v in drift["discontinuities"].values())
        print(f"discontinuities during the drift session: {n}"
              + ("" if not n else " — " + "; ".join(f"{k}: " + ", ".join(f"{d['step_ms']:+.1f} ms" for d in v)
                                                    for k, v in drift["discontinuities"].items() if v)))
    if not args.no_save:
        print(f"saved to {stored.default_path(args.state_dir)}")
    return 0
