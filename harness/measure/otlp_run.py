"""`vlh run --otlp-listen`: the glue between the run and the OTLP receiver (harness/telemetry/otlp_*.py).

One receiver per run, in the parent process (`start`); each finished call waits briefly for the agent's spans
(an SDK's batch processor exports every few seconds — `wait_s`), claims its conversations, and measures with them
(`attach`, `measure`). The receiver's counts go into run.json `telemetry` (`otlp_rejected`, …) and each call's
clock placement into run.json `otlp`.
"""

from __future__ import annotations

import logging
import math
import time

from harness.errors import VlhError
from harness.telemetry.otlp_calls import OtlpCallTelemetry, OtlpIntake

log = logging.getLogger(__name__)

_ACTIVE: OtlpIntake | None = None  # this process's receiver (the parent's); worker processes have none
WAIT_S = 6.0  # the OpenTelemetry SDK's BatchSpanProcessor exports every 5 s by default


def start(listen: str | None, calls: int, per_process: int):
    """Start the receiver for `--otlp-listen [HOST:]PORT` (None: nothing). Returns the intake."""
    global _ACTIVE
    if not listen:
        return None
    from harness.telemetry.otlp_receiver import OtlpReceiver, parse_listen

    if calls > per_process:
        raise VlhError(f"--otlp-listen with --calls {calls}: the receiver serves calls run in one process (up to "
                       f"{per_process}); use fewer calls")
    host, port = parse_listen(listen)
    _ACTIVE = OtlpIntake(OtlpReceiver(host, port).start())
    log.warning("OTLP receiver listening on %s", _ACTIVE.receiver.url)
    return _ACTIVE


def stop(intake, store) -> None:
    global _ACTIVE
    if intake is None:
        return
    intake.receiver.stop()
    for k, v in intake.receiver.counts.items():
        store.telemetry_counts[k] = store.telemetry_counts.get(k, 0) + v
    store.telemetry_counts.setdefault("otlp_rejected", 0)
    store.meta["otlp"] = {"listen": intake.receiver.url, "frameworks": sorted(intake.frameworks),
                          "same_host": intake.receiver.same_host(), "calls": intake.calls}
    _ACTIVE = None


async def attach(telemetry, capture, plans, wait_s: float = WAIT_S):
    """The call's telemetry with its OTLP conversations merged in (unchanged without a receiver)."""
    intake = _ACTIVE
    if intake is None or not plans:
        return telemetry
    rec = intake.receiver
    # wait until the agent has exported a span ending after the last utterance's end, then a short quiet time
    last_end = max(p.mic_end for p in plans)
    wall_last = time.time_ns() - int(round((time.monotonic() - last_end) * 1e9))
    await rec.wait_for(wall_last, wait_s, call_id=capture.meta.get("pc_id"))
    rec.stamp()
    convs = intake.claim(capture.t0_mono, time.monotonic(), [p.mic_end for p in plans], capture.meta.get("pc_id"))
    if not convs:
        return telemetry
    return OtlpCallTelemetry(telemetry, convs, intake.clock(), rec.same_host())


def measure(fn, telemetry, plans, call_no: int):
    """fn(telemetry) → (rows, events): measure once; with OTLP, check the agent's clock against the ear and
    measure again when it had to be moved; then framework_v2v_ms per turn."""
    rows, events = fn(telemetry)
    if not isinstance(telemetry, OtlpCallTelemetry):
        return rows, events
    if telemetry.settle(rows, events):
        rows, events = fn(telemetry)
    windows = [(p.mic_start, plans[k + 1].mic_start if k + 1 < len(plans) else math.inf)
               for k, p in enumerate(plans)]
    telemetry.annotate(rows, windows)
    if _ACTIVE is not None:
        _ACTIVE.calls.append({"call": call_no, **telemetry.summary()})
    return rows, events


def export(run_dir, endpoint: str, headers: dict) -> None:
    """`vlh run --otlp-endpoint`: send the finished run's traces; a failure is a warning, the run stands."""
    from harness.telemetry.otlp_export import export_run

    try:
        n = export_run(run_dir, endpoint, headers)
        log.warning("OTLP export: %d spans sent", n)
    except VlhError as exc:
        log.warning("OTLP export failed: %s", exc)
