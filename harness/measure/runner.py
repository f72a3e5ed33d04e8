"""`vlh run`: measure a voice agent turn by turn and write a run folder.

With no agent URL, vlh starts its reference agent (harness/agent) as a subprocess on a free local port — the embedded
default target — and measures that. The measuring side never imports the agent: it talks to it over WebRTC.

`transport="loopback"`: the call goes through sound devices (harness/transports/loopback/call.py). With no agent given,
vlh brings its PulseAudio null sinks up (a lease for this process; down on exit), calibrates them if no stored
calibration matches, and starts the reference agent on them (`vlh agent --audio-in vlh_mic_monitor --audio-out
vlh_ear --telemetry-file <run>/agent-telemetry.jsonl`); the telemetry file is ingested on the host clock
(harness/telemetry/file.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.measure import otlp_run
from harness.measure.measure_call import MeasureOptions, TurnPlan, measure_call
from harness.audio.noise import NoiseBed, noise_rms
from harness.audio.synth import load_utterance, sharpen, synthesize
from harness.errors import VlhError
from harness.results.store import PartStore, RunStore, default_out_dir
from harness.results.redact import redact_url

log = logging.getLogger(__name__)

BUILTIN_QUESTIONS = [
    "What time does the pharmacy open tomorrow?",
    "Can you book a table for two at eight?",
    "How far is the airport from here?",
    "What is the weather like this weekend?",
    "Please remind me to call my sister.",
    "Which train goes to the city centre?",
    "How much is a ticket to Boston?",
    "Is the museum open on Mondays?",
    "Can I change my delivery address?",
    "What was the score of the game last night?",
]


@dataclass
class Utterance:
    text: str
    samples: np.ndarray
    pause_after_s: float = 0.6
    timeout_s: float = 10.0
    barge_in_after_ms: float | None = None
    noise_kind: str | None = None  # the scenario's mic noise during and after this turn (harness/audio/noise.py)
    noise_rms: float = 0.0


@dataclass
class RunConfig:
    agent_url: str | None = None
    agent_profile: str = "typical"
    agent_overrides: dict = field(default_factory=dict)
    agent_args: list[str] = field(default_factory=list)  # extra `vlh agent` flags for the embedded agent
    scenario: object | None = None  # harness.suite.scenario.Scenario
    turns: int | None = None
    texts: list[str] | None = None  # what to say when there is no scenario (default: built-in questions)
    calls: int = 1
    out_dir: Path | None = None
    timeout_s: float | None = None
    headers: dict = field(default_factory=dict)
    jitter_buffer: str = "adaptive"
    processor_map: dict = field(default_factory=dict)
    transport: str = "webrtc"
    lead_in_s: float = 0.8
    reply_end_silence_s: float = 0.8
    report: bool = True
    progress: bool = True
    force: bool = False
    calls_per_process: int = 16  # more concurrent calls than this run in worker processes, one loop each
    measure: MeasureOptions = field(default_factory=MeasureOptions)
    # loopback only
    telemetry_file: Path | None = None  # the agent's telemetry (JSONL, host clock); set for the embedded agent
    mic_device: str | None = None  # real sound cards: the output into the agent's microphone
    ear_device: str | None = None  # ... and the input from its speaker
    agent_running: bool = False  # an agent already runs on the devices: do not start the reference agent
    state_dir: Path | None = None  # vlh's loopback state (default: $VLH_STATE_DIR …)
    # OpenTelemetry (harness/measure/otlp_run.py, harness/telemetry/otlp_export.py)
    otlp_listen: str | None = None  # [HOST:]PORT: receive the agent's spans
    otlp_endpoint: str | None = None  # export the run's turns as traces to this OTLP/HTTP URL
    otlp_headers: dict = field(default_factory=dict)  # export headers (never written anywhere)


# ---- what to say ---------------------------------------------------------------------------------------------
def build_utterances(cfg: RunConfig) -> tuple[list[Utterance], str]:
    """The turns of one call and the scenario name."""
    sc = cfg.scenario
    if sc is None:
        n = cfg.turns or 5
        texts = cfg.texts or BUILTIN_QUESTIONS
        out = []
        for i in range(n):
            text = texts[i % len(texts)]
            out.append(Utterance(text, crisp(synthesize(text)), 0.6, cfg.timeout_s or 10.0))
        return out, "builtin"
    out = []
    turns = sc.played_turns(cfg.turns)  # the list `repetitions` times, or --turns N cycling through it
    for i, t in enumerate(turns):
        if t.say:
            samples = crisp(synthesize(t.say, voice=t.voice, rate=t.rate))
            text = t.say
        else:
            samples = load_utterance(t.wav)
            text = f"wav:{Path(t.wav).name}"
        samples = shape_level(samples, t.level_dbfs)
        out.append(Utterance(text, samples, t.pause_after_ms / 1000.0, cfg.timeout_s or t.timeout_s or sc.timeout_s,
                             t.barge_in_after_ms, t.noise.type if t.noise is not None else None,
                             noise_rms(samples, t.noise.snr_db) if t.noise is not None else 0.0))
    return out, sc.name


def crisp(samples: np.ndarray) -> np.ndarray:
    """Scripted speech ends inside a voiced region with a 2 ms fade, so its true end is known to the sample."""
    out, _ = sharpen(samples)
    return out


def shape_level(x: np.ndarray, level_dbfs: float | None) -> np.ndarray:
    """Set the speech RMS level (the scenario's `noise:` is the call's background: harness/audio/noise.py)."""
    x = np.asarray(x, np.float32)
    if level_dbfs is not None:
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        if rms > 0:
            x = x * (10 ** (level_dbfs / 20) / rms)
    return np.clip(x, -1, 1).astype(np.float32)


def attach_noise(call, utterances: list[Utterance]):
    """The scenario's mic noise as the call's background (a NoiseBed mixed into every mic frame), from the call's
    start at the first noisy turn's level; None when no turn has noise."""
    first = next((u for u in utterances if u.noise_kind), None)
    if first is None:
        return None
    mic = getattr(call, "mic", None)
    if mic is None or not hasattr(mic, "background"):
        raise VlhError("scenario noise: this transport cannot mix background noise into the microphone yet; "
                       "use --transport webrtc for scenarios with `noise:`")
    bed = NoiseBed()
    bed.set(0, first.noise_kind, first.noise_rms)
    mic.background = bed
    return bed


# ---- the embedded reference agent ------------------------------------------------------------------------------
class ReferenceAgent:
    """`vlh agent` in a subprocess on a free local port; its truth log goes into the run folder."""

    def __init__(self, profile: str, overrides: dict, extra_args: list[str], truth_log: Path):
        self.profile, self.overrides, self.extra_args, self.truth_log = profile, overrides, extra_args, truth_log
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def _command(self, port_file: Path) -> list[str]:
        return [sys.executable, "-m", "harness", "agent", "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file), "--profile", self.profile, "--truth-log", str(self.truth_log)]

    def _env(self) -> dict:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def _ready(self, port_file: Path) -> str:
        port = int(port_file.read_text().strip())
        return f"http://127.0.0.1:{port}/api/offer"

    def start(self, timeout: float = 30.0) -> str:
        port_file = Path(tempfile.mkstemp(prefix="vlh-agent-port-")[1])
        port_file.unlink()
        cmd = self._command(port_file)
        for k, v in self.overrides.items():  # every reference-agent setting is a `vlh agent --<name>` flag
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                cmd += [f"--{str(k).replace('_', '-')}", str(item)]
        cmd += list(self.extra_args)
        self.log_path = self.truth_log.with_name("agent.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self._env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.flush()
                text = self.log_path.read_text()
                errs = [ln for ln in text.splitlines() if ln.startswith("vlh: error: ")]
                if errs:  # the agent's own one-line error names the device/setting and the fix
                    raise VlhError(f"the reference agent could not start: {errs[-1][len('vlh: error: '):]}")
                raise VlhError(f"the reference agent exited at start-up (code {self.proc.returncode}): {text[-600:]}")
            if port_file.exists() and port_file.read_text().strip():
                self.url = self._ready(port_file)
                port_file.unlink()
                return self.url
            time.sleep(0.05)
        self.stop()
        raise VlhError(f"the reference agent did not start within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()


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


def loopback_devices(cfg: RunConfig):
    from harness.transports.loopback.call import LoopbackDevices

    if cfg.mic_device or cfg.ear_device:
        if not (cfg.mic_device and cfg.ear_device):
            raise VlhError("--mic-device and --ear-device go together: name the output into the agent's microphone "
                           "and the input from its speaker")
        return LoopbackDevices.real(cfg.mic_device, cfg.ear_device)
    return LoopbackDevices()


# ---- one call ---------------------------------------------------------------------------------------------------
async def run_call(cfg: RunConfig, url: str, call_no: int, utterances: list[Utterance], store: RunStore,
                   on_turn=None) -> list[dict]:
    loopback = cfg.transport == "loopback"
    if loopback:
        from harness.transports.loopback.call import LoopbackTransport

        call = LoopbackTransport(loopback_devices(cfg), state_dir=cfg.state_dir)
    else:
        from harness.transports.webrtc.client import WebRTCCall

        call = WebRTCCall(url, cfg.headers, cfg.jitter_buffer, cfg.processor_map)
    plans: list[TurnPlan] = []
    try:
        await call.connect()
    except VlhError as exc:
        rows = [_failed_row(call_no, i + 1, u.text, "error:connect", str(exc)) for i, u in enumerate(utterances)]
        store.add_call(call_no, None, rows, [])
        for r in rows:
            on_turn and on_turn(r)
        if call_no == 1:
            raise
        return rows
    bed = attach_noise(call, utterances)
    interrupted = False
    try:
        await asyncio.sleep(cfg.lead_in_s)
        for i, utt in enumerate(utterances):
            if call.disconnected:
                plans.append(TurnPlan(i + 1, utt.text, time.monotonic(), time.monotonic(), status="error:disconnected",
                                      error=call.disconnect_reason))
                continue
            at = None
            if utt.barge_in_after_ms is not None and plans and plans[-1].extra.get("_reply_start"):
                at = plans[-1].extra["_reply_start"] + utt.barge_in_after_ms / 1000.0
            start = call.schedule(utt.samples, at=at)
            if bed is not None:  # from this utterance's first sample on, the room sounds as this turn says
                bed.set(round((start - call.mic.t_start) * 48000), utt.noise_kind, utt.noise_rms)
            end = start + len(utt.samples) / 48000.0
            plan = TurnPlan(i + 1, utt.text, start, end, barge_in_at=start if at is not None else None)
            # the speech itself, without the scenario's added noise: the truth of user_speech_start/_end
            plan.extra.update(speech_sent_start_mono=start, speech_sent_end_mono=end)
            if plans:
                plans[-1].next_start = start
            plans.append(plan)
            await _sleep_until(end)
            status = await _await_reply(call, plan, utt, cfg)
            if status != "ok":
                plan.status = status
                if status == "error:disconnected":
                    plan.error = call.disconnect_reason
            # barge-in: the next turn starts inside this reply, don't wait for its end
            nxt = utterances[i + 1] if i + 1 < len(utterances) else None
            if nxt is None or nxt.barge_in_after_ms is None:
                await _await_reply_end(call, plan, cfg)
                await asyncio.sleep(utt.pause_after_s)
            if on_turn:
                on_turn({"call": call_no, "turn": plan.turn, "status": plan.status})
        await asyncio.sleep(0.3)
    except (asyncio.CancelledError, KeyboardInterrupt):
        interrupted = True
    finally:
        await call.close()
        capture = call.capture()
        # every played frame: which packet, when (README: recordings/call-<n>.playout.parquet)
        if not loopback and call.playout.ticks:
            call.playout.write_log(store.dir / "recordings" / f"call-{call_no}.playout.parquet")
        for p in plans:
            p.extra.pop("_reply_start", None)
            p.extra.pop("_reply_end", None)
        if loopback:
            telemetry = _file_telemetry(cfg, capture)
            measure = lambda tel: measure_call(capture, plans, tel, None, cfg.measure, call_no,  # noqa: E731
                                               device_path=True)
        else:
            telemetry = call.telemetry
            measure = lambda tel: measure_call(capture, plans, tel, call.playout, cfg.measure,  # noqa: E731
                                               call_no, call.mic.lateness if call.mic else None, call.stalls)
        telemetry = await otlp_run.attach(telemetry, capture, plans)  # the agent's spans (--otlp-listen)
        rows, events = otlp_run.measure(measure, telemetry, plans, call_no)
        if loopback:
            _device_glitches(call, plans, rows)
        capture.meta.update(call=call_no, turns=len(plans))
        fit = telemetry.fit if telemetry is not None else None
        clock = fit.as_dict(capture.t0_mono) if fit else None
        store.add_call(call_no, capture, rows, events, clock, dict(telemetry.counts) if telemetry else {})
        if telemetry is not None and telemetry.anomalies:
            for r in rows:
                r["anomalies"] = ";".join(filter(None, [r.get("anomalies", "")] + telemetry.anomalies))
    if interrupted:
        raise asyncio.CancelledError
    return rows


def _file_telemetry(cfg: RunConfig, capture):
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


def _device_glitches(call, plans: list[TurnPlan], rows: list[dict]) -> None:
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


async def _sleep_until(t: float) -> None:
    d = t - time.monotonic()
    if d > 0:
        await asyncio.sleep(d)


SPEECH_RMS = 0.004  # live gate on the ear (≈ −48 dBFS); the exact instants come from the capture afterwards


async def _await_reply(call, plan: TurnPlan, utt: Utterance, cfg: RunConfig) -> str:
    """Wait for agent audio at the ear after the utterance; 'ok', 'no_response' or 'error:disconnected'."""
    deadline = plan.mic_end + utt.timeout_s
    while time.monotonic() < deadline:
        if call.disconnected:
            return "error:disconnected"
        for t, level in call.ear_frames_since(plan.mic_end):
            if level > SPEECH_RMS:
                plan.extra["_reply_start"] = t
                return "ok"
        await asyncio.sleep(0.02)
    return "no_response"


async def _await_reply_end(call, plan: TurnPlan, cfg: RunConfig, max_reply_s: float = 60.0) -> None:
    if plan.status != "ok":
        return
    start = plan.extra.get("_reply_start", plan.mic_end)
    deadline = start + max_reply_s
    while time.monotonic() < deadline and not call.disconnected:
        frames = call.ear_frames_since(start)
        loud = [t for t, lv in frames if lv > SPEECH_RMS]
        last = loud[-1] if loud else start
        if frames and frames[-1][0] - last >= cfg.reply_end_silence_s:
            plan.extra["_reply_end"] = last
            return
        await asyncio.sleep(0.05)


def _failed_row(call: int, turn: int, text: str, status: str, error: str) -> dict:
    return {"call": call, "turn": turn, "status": status, "error": error, "text": text}


# ---- the whole run ---------------------------------------------------------------------------------------------
def run_measurement(cfg: RunConfig) -> Path:
    """Run every call, write the run folder, return its path. Ctrl-C keeps every finished turn (partial: true)."""
    if cfg.transport not in ("webrtc", "loopback"):
        raise VlhError(f"transport {cfg.transport!r}: vlh knows 'webrtc' and 'loopback'")
    if cfg.transport == "loopback":
        _check_loopback(cfg)
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir()
    utterances, scenario_name = build_utterances(cfg)
    agent = None
    meta = {"transport": cfg.transport, "scenario": scenario_name,
            "scenario_file": str(getattr(cfg.scenario, "source", "") or "") or None,
            "config": {"calls": cfg.calls, "turns": len(utterances), "jitter_buffer": cfg.jitter_buffer,
                       "timeout_s": cfg.timeout_s, "processor_map": cfg.processor_map,
                       "header_names": sorted(cfg.headers)},
            "calls": cfg.calls, "codec_delay_ms": cfg.measure.codec_delay_s * 1e3}
    if cfg.otlp_listen or cfg.otlp_endpoint:
        meta["config"].update(otlp_listen=cfg.otlp_listen, otlp_endpoint=redact_url(cfg.otlp_endpoint),
                              otlp_header_names=sorted(cfg.otlp_headers))
    if cfg.transport == "loopback":
        meta["codec_delay_ms"] = 0.0
        meta["config"].pop("jitter_buffer")
    store = RunStore(out, meta, force=cfg.force)
    from harness.devices.priority import set_nice

    set_nice(-10)  # a stamping process should not wait behind batch work (ignored where not permitted)
    lease = None
    partial = False
    intake = None
    try:
        intake = otlp_run.start(cfg.otlp_listen, cfg.calls, cfg.calls_per_process)
        if cfg.transport == "loopback":
            cfg, lease, url, agent = _loopback_setup(cfg, store, out)
        elif cfg.agent_url is None:
            agent = ReferenceAgent(cfg.agent_profile, cfg.agent_overrides, cfg.agent_args, out / "agent-truth.jsonl")
            url = agent.start()
            store.meta.update(agent_url=url, agent="reference", profile=cfg.agent_profile,
                              agent_overrides=cfg.agent_overrides)
        else:
            url = cfg.agent_url
            store.meta.update(agent_url=redact_url(url), agent="external", profile=None)
        progress = _Progress(cfg.calls * len(utterances), enabled=cfg.progress)
        groups = call_groups(cfg.calls, cfg.calls_per_process)
        try:
            if len(groups) == 1:
                asyncio.run(_run_calls(cfg, url, utterances, store, groups[0], progress))
            else:
                _run_in_processes(cfg, url, utterances, store, groups)
        except KeyboardInterrupt:
            partial = True
        finally:
            progress.close()
    finally:
        if agent:
            agent.stop()
        if lease is not None:
            from harness.devices import pulse

            try:
                pulse.down(cfg.state_dir, lease=lease)
            except VlhError as exc:
                log.warning("loopback: down: %s", exc)
        otlp_run.stop(intake, store)
        store.merge_parts()
        store.flush(partial=partial, extra={"slo": _slo_verdicts(cfg, store)})
    if cfg.otlp_endpoint and store.rows:
        otlp_run.export(out, cfg.otlp_endpoint, cfg.otlp_headers)
    if cfg.report and store.rows:
        _write_report(out)
    if partial:
        raise KeyboardInterrupt
    if cfg.transport == "loopback":
        _check_agent_spoke(cfg, store, agent)
    return out


def _check_loopback(cfg: RunConfig) -> None:
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


def _loopback_setup(cfg: RunConfig, store: RunStore, out: Path):
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


def _check_agent_spoke(cfg: RunConfig, store: RunStore, agent) -> None:
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


def _slo_verdicts(cfg: RunConfig, store: RunStore) -> list[dict]:
    """The scenario's SLOs judged on this run's turns (none without a scenario)."""
    sc = cfg.scenario
    if sc is None or not store.rows:
        return []
    from harness.results.slo import evaluate

    thresholds = sc.slo.thresholds() if hasattr(sc.slo, "thresholds") else {}
    return [r.to_dict() for r in evaluate(store.dataframe(), thresholds)] if thresholds else []


def call_groups(calls: int, per_process: int) -> list[list[int]]:
    """Calls 1…N split into groups of at most `per_process`, one event loop (and process) per group — one loop
    sustains about 20 real-time calls on this kind of machine."""
    per = max(1, per_process)
    nums = list(range(1, calls + 1))
    n_groups = -(-calls // per)
    return [nums[i::n_groups] for i in range(n_groups)]


async def _run_calls(cfg: RunConfig, url: str, utterances, store, numbers: list[int], progress=None) -> None:
    async def one(n: int):
        await run_call(cfg, url, n, utterances, store, on_turn=progress.advance if progress else None)
        store.flush(partial=True)

    tasks = [asyncio.ensure_future(one(n)) for n in numbers]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    except (asyncio.CancelledError, KeyboardInterrupt):
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise KeyboardInterrupt
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _worker(cfg: RunConfig, url: str, utterances, numbers: list[int], out_dir: str) -> None:
    """A worker process: its calls on its own event loop; results go to <run>/parts/ for the parent to merge."""
    from harness.devices.priority import set_nice

    set_nice(-10)
    store = PartStore(Path(out_dir))
    try:
        asyncio.run(_run_calls(cfg, url, utterances, store, numbers))
    except KeyboardInterrupt:
        pass
    except VlhError as exc:
        store.error(str(exc))


def _run_in_processes(cfg: RunConfig, url: str, utterances, store: RunStore, groups) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(cfg, url, utterances, g, str(store.dir)), daemon=False)
             for g in groups]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:  # the workers got the same SIGINT: let them write their finished turns
            p.join(60)
        raise
    errs = store.part_errors()
    if errs:
        raise VlhError(errs[0])


def _write_report(out: Path) -> None:
    try:
        from harness.report.render import write_report
    except ImportError:
        return
    try:
        write_report([out], out / "report.html")
    except VlhError as exc:
        log.warning("report not written: %s", exc)


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("turns", total=total)

    def advance(self, row: dict) -> None:
        if self.bar:
            self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
