"""`vlh run`: measure a voice agent turn by turn and write a run folder.

The transport (`cfg.transport`: webrtc, loopback, …) is behind one interface (harness/transports/base.py): it checks
the settings, sets the run up (with no agent given, it starts vlh's reference agent — the embedded default target —
as a subprocess; the measuring side never imports the agent), makes each call and says what the measurement needs
from it. This module only speaks the turns, follows the replies and measures.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.measure import otlp_run
from harness.measure.measure_call import MeasureOptions, TurnPlan, measure_call
from harness.audio.noise import NoiseBed, noise_rms
from harness.audio.synth import load_utterance, sharpen, synthesize
from harness.devices.heap import fix_mmap_threshold
from harness.errors import AgentUnreachable, VlhError
from harness.results.redact import redact_url
from harness.results.store import PartStore, RunStore, default_out_dir
from harness.transports.reference_agent import ReferenceAgent  # noqa: F401  (bench/, tests import it from here)
from harness.transports.registry import transport_for

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
    connect_timeout_s: float = 15.0  # the offer's HTTP answer and the ICE/DTLS set-up, each
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
    # ws-telephony only (harness/transports/telephony/)
    provider: str = "twilio"
    stream_params: dict = field(default_factory=dict)
    pstn_ms: float = 0.0


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
            samples = crisp(synthesize(t.say, voice=t.voice, rate=t.rate, engine=t.engine))
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


# ---- one call ---------------------------------------------------------------------------------------------------
async def run_call(cfg: RunConfig, url: str, call_no: int, utterances: list[Utterance], store: RunStore,
                   on_turn=None) -> list[dict]:
    fix_mmap_threshold()  # a long call's growing buffers stay out of the heap (harness/devices/heap.py)
    transport = transport_for(cfg)
    call = transport.new_call(cfg, url)
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
        transport.write_side_logs(call, store.dir / "recordings", call_no)
        for p in plans:
            p.extra.pop("_reply_start", None)
            p.extra.pop("_reply_end", None)
        telemetry, inputs = transport.measure_inputs(cfg, call, capture)
        telemetry = await otlp_run.attach(telemetry, capture, plans)  # the agent's spans (--otlp-listen)
        measure = lambda tel: measure_call(capture, plans, tel, opts=cfg.measure, call=call_no,  # noqa: E731
                                           **inputs)
        rows, events = otlp_run.measure(measure, telemetry, plans, call_no)
        transport.annotate(call, plans, rows)
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
    transport = transport_for(cfg)
    transport.check(cfg)
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir()
    utterances, scenario_name = build_utterances(cfg)
    agent = None
    meta = {"transport": cfg.transport, "scenario": scenario_name,
            "scenario_file": str(getattr(cfg.scenario, "source", "") or "") or None,
            "config": {"calls": cfg.calls, "turns": len(utterances), "jitter_buffer": cfg.jitter_buffer,
                       "timeout_s": cfg.timeout_s, "processor_map": cfg.processor_map,
                       "header_names": sorted(cfg.headers)},
            "calls": cfg.calls, "codec_delay_ms": cfg.measure.codec_delay_s * 1e3}
    transport.describe(meta)
    if cfg.otlp_listen or cfg.otlp_endpoint:
        meta["config"].update(otlp_listen=cfg.otlp_listen, otlp_endpoint=redact_url(cfg.otlp_endpoint),
                              otlp_header_names=sorted(cfg.otlp_headers))
    store = RunStore(out, meta, force=cfg.force)
    from harness.devices.priority import set_nice

    set_nice(-10)  # a stamping process should not wait behind batch work (ignored where not permitted)
    partial = False
    failure: BaseException | None = None  # run.json then says state "failed" and why
    intake = None
    try:
        intake = otlp_run.start(cfg.otlp_listen, cfg.calls, cfg.calls_per_process)
        cfg, url, agent = transport.setup(cfg, store, out)
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
    except Exception as exc:
        failure = exc
        raise
    finally:
        if agent:
            agent.stop()
        transport.teardown(cfg)
        otlp_run.stop(intake, store)
        store.merge_parts()
        state = "failed" if failure is not None else "interrupted" if partial else "complete"
        store.flush(partial=partial, state=state,
                    extra={"slo": _slo_verdicts(cfg, store), "error": _failure_line(failure)})
    if cfg.otlp_endpoint and store.rows:
        otlp_run.export(out, cfg.otlp_endpoint, cfg.otlp_headers)
    if cfg.report and store.rows:
        _write_report(out)
    if partial:
        raise KeyboardInterrupt
    transport.after_run(cfg, store, agent)
    return out


def _failure_line(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return str(exc) if isinstance(exc, VlhError) else f"{type(exc).__name__}: {exc}"


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
    except VlhError as exc:  # its exit code travels with it (3: the agent could not be reached)
        store.error(f"{exc.exit_code} " + str(exc).replace("\n", " "))


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
        code, _, message = errs[0].partition(" ")
        exc = AgentUnreachable(message) if code == str(AgentUnreachable.exit_code) else VlhError(message)
        if code.isdigit():
            exc.exit_code = int(code)
        raise exc


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
