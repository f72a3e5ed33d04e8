"""The loopback transport behind the runner's interface (harness/transports/base.py): a call through sound devices
(call.py). With no agent given, vlh brings its PulseAudio null sinks up (a lease for this process; down on exit),
calibrates them if no stored calibration matches, and starts the reference agent on them (`vlh agent --audio-in
vlh_mic_monitor --audio-out vlh_ear --telemetry-file <run>/agent-telemetry.jsonl`); the telemetry file is ingested
on the host clock (harness/telemetry/file.py). The ear is a device recording: no network, jitter buffer or codec
(measure_call's `device_path`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from harness.errors import VlhError
from harness.transports.base import Transport
from harness.transports.reference_agent import ReferenceAgent

log = logging.getLogger(__name__)


class LoopbackSession(Transport):
    name = "loopback"
    codec_delay_ms = 0.0

    def __init__(self):
        self.lease = None

    def check(self, cfg) -> None:
        _check_loopback(cfg)

    def describe(self, meta: dict) -> None:
        meta["codec_delay_ms"] = 0.0
        meta["config"].pop("jitter_buffer", None)

    def setup(self, cfg, store, out: Path):
        cfg, self.lease, url, agent = _loopback_setup(cfg, store, out)
        return cfg, url, agent

    def teardown(self, cfg) -> None:
        if self.lease is not None:
            from harness.devices import pulse

            try:
                pulse.down(cfg.state_dir, lease=self.lease)
            except VlhError as exc:
                log.warning("loopback: down: %s", exc)
            self.lease = None

    def new_call(self, cfg, url: str):
        from harness.transports.loopback.call import LoopbackTransport

        return LoopbackTransport(loopback_devices(cfg), state_dir=cfg.state_dir)

    def measure_inputs(self, cfg, call, capture):
        return _file_telemetry(cfg, capture), {"device_path": True}

    def annotate(self, call, plans, rows: list[dict]) -> None:
        _device_glitches(call, plans, rows)

    def after_run(self, cfg, store, agent) -> None:
        _check_agent_spoke(cfg, store, agent)


class DeviceAgent(ReferenceAgent):
    """`vlh agent --audio-in … --audio-out …` in a subprocess on the loopback devices; its truth log and its
    telemetry file go into the run folder."""

    def __init__(self, profile: str, overrides: dict, extra_args: list[str], truth_log: Path, telemetry: Path,
                 audio_in: str, audio_out: str, state_dir=None):
        super().__init__(profile, overrides, extra_args, truth_log)
        self.telemetry, self.audio_in, self.audio_out, self.state_dir = telemetry, audio_in, audio_out, state_dir

    def _command(self, port_file: Path) -> list[str]:
        return [sys.executable, "-m", "harness", "agent", "--audio-in", self.audio_in, "--audio-out", self.audio_out,
                "--telemetry-file", str(self.telemetry), "--ready-file", str(port_file), "--profile", self.profile,
                "--truth-log", str(self.truth_log)]

    def _env(self) -> dict:
        from harness.devices import pulse

        return pulse.child_env(self.state_dir, {**os.environ, "PYTHONUNBUFFERED": "1"})

    def _ready(self, port_file: Path) -> str:
        return f"devices:{self.audio_in}->{self.audio_out}"


def loopback_devices(cfg):
    from harness.transports.loopback.call import LoopbackDevices

    if cfg.mic_device or cfg.ear_device:
        if not (cfg.mic_device and cfg.ear_device):
            raise VlhError("--mic-device and --ear-device go together: name the output into the agent's microphone "
                           "and the input from its speaker")
        return LoopbackDevices.real(cfg.mic_device, cfg.ear_device)
    return LoopbackDevices()


def _file_telemetry(cfg, capture):
    """The agent's telemetry file (loopback), the messages written during this call; None without a file."""
    if cfg.telemetry_file is None:
        return None
    from harness.telemetry.file import FileTelemetry

    tel = FileTelemetry(cfg.processor_map)
    try:
        tel.load(cfg.telemetry_file, t_from=capture.t0_mono - 1.0)
    except VlhError as exc:  # the sound is measured all the same; the stages are then unattributed
        log.warning("loopback: %s", exc)
        tel.anomalies.append(str(exc))
        return tel
    if tel.header and tel.header.get("call"):
        capture.meta.setdefault("pc_id", tel.header["call"])
    return tel


def _device_glitches(call, plans, rows: list[dict]) -> None:
    """Per turn: the sound devices' discontinuities (underruns of the mic output, overflows of the recordings)
    between this utterance's start and the next one's — counted in `underruns` and named in `anomalies`."""
    stats = call.stats()
    for k, r in enumerate(rows):
        lo = plans[k].mic_start - 0.2
        hi = plans[k + 1].mic_start if k + 1 < len(plans) else float("inf")
        g = call.glitches_between(lo, hi, stats)
        r["underruns"] = len(g)
        if g:
            what = ", ".join(f"{d['stream']} {d['step_ms']:+.1f} ms" for d in g[:4])
            r["anomalies"] = ";".join(filter(None, [r.get("anomalies", ""), (
                f"sound device discontinuity in this turn ({what}): samples lost or repeated")]))


def _check_loopback(cfg) -> None:
    if cfg.calls != 1:
        raise VlhError(f"--calls {cfg.calls} with --transport loopback: the loopback devices carry one call (one "
                       "microphone, one speaker); use --calls 1, or --transport webrtc for concurrent calls")
    if cfg.agent_url is not None:
        raise VlhError("--agent URL is a WebRTC agent; with --transport loopback the agent is whatever listens on "
                       "the sound devices: give --agent-running (and its --telemetry-file), or nothing to start "
                       "the reference agent on vlh's devices")
    if (cfg.mic_device or cfg.ear_device) and not (cfg.agent_running or cfg.telemetry_file):
        raise VlhError("--mic-device/--ear-device name real sound devices: the agent is then yours, already running "
                       "on them; add --agent-running (and --telemetry-file F if it writes vlh telemetry)")


def _loopback_setup(cfg, store, out: Path):
    """Devices up (a lease for this process), a calibration, the reference agent on the devices unless an agent
    runs there already. Returns (cfg with the telemetry file set, lease or None, agent label, agent or None)."""
    import dataclasses

    from harness.devices import pulse
    from harness.transports.loopback.calibrate import calibrate
    from harness.transports.loopback.stored import load_matching
    from harness.devices.stamped import DEFAULT_LATENCY

    devices = loopback_devices(cfg)
    lease = None
    if devices.pulse_managed:
        lease = pulse.process_lease(tag="vlh-run")
        pulse.up(cfg.state_dir, lease=lease)
        pulse.activate(cfg.state_dir)
    try:
        cal = load_matching(devices, DEFAULT_LATENCY, cfg.state_dir)
        made = False
        if cal is None and devices.pulse_managed:
            log.warning("loopback: no calibration for these devices yet; calibrating (20 sessions)")
            cal = asyncio.run(calibrate(devices, state_dir=cfg.state_dir))
            made = True
        store.meta.update(devices=dataclasses.asdict(devices),
                          calibration=dict(cal.brief(), made_for_this_run=made) if cal is not None else None)
        agent = None
        if cfg.agent_running or cfg.telemetry_file is not None:
            label = "devices:external"
            store.meta.update(agent_url=label, agent="external", profile=None,
                              telemetry_file=str(cfg.telemetry_file) if cfg.telemetry_file else None)
        else:
            tel = out / "agent-telemetry.jsonl"
            tel.unlink(missing_ok=True)
            cfg = dataclasses.replace(cfg, telemetry_file=tel)
            agent = DeviceAgent(cfg.agent_profile, cfg.agent_overrides, cfg.agent_args, out / "agent-truth.jsonl",
                                tel, pulse.DEVICES.mic_record, pulse.DEVICES.ear_play, cfg.state_dir)
            label = agent.start()
            store.meta.update(agent_url=label, agent="reference", profile=cfg.agent_profile,
                              agent_overrides=cfg.agent_overrides, telemetry_file=tel.name)
    except BaseException:
        if lease is not None:
            pulse.down(cfg.state_dir, lease=lease)
        raise
    return cfg, lease, label, agent


def _check_agent_spoke(cfg, store, agent) -> None:
    """An agent that never made a sound on the ear device is a set-up fault, not a latency: one clear line."""
    rows = store.rows
    if not rows or any(r.get("status") == "ok" for r in rows):
        return
    if not all(r.get("status") == "no_response" for r in rows):
        return
    from harness.devices import pulse

    devices = loopback_devices(cfg)
    ear, mic = devices.ear_record, devices.mic_record or devices.mic_play
    play = pulse.DEVICES.ear_play if devices.pulse_managed else "the output that device records"
    who = (f"the reference agent played nothing (see {agent.log_path})" if agent is not None
           else f"is your agent playing into {play!r}, what {ear!r} records")
    raise VlhError(f"no agent audio on the ear device {ear!r} in any of {len(rows)} turns: {who}, and does it "
                   f"listen to {mic!r}? (run folder {store.dir})")
