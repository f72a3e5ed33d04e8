"""A run folder → OpenTelemetry traces, with the OpenTelemetry SDK and its OTLP/HTTP exporter.

One trace per call: a `vlh.call` root span, a `vlh.turn` span per turn (from the user's first sample to the end
of the agent's reply), a child span per attributed stage (`vlh.stage.<stage>`, or `vlh.unattributed` /
`vlh.residual`) at its place on the reconciled host clock, and the ear-level instants (user speech start/end,
agent audio start/end, first packet arrival/playout) and the agent's events as span events on the turn. Times are
the run's real wall-clock times: run.json `wall_clock` holds one instant on both clocks. Names: GenAI semantic
conventions where one exists (the `llm_ttft` stage carries `gen_ai.operation.name=chat` and
`gen_ai.response.time_to_first_chunk`; `tts_ttfb` carries `gen_ai.output.type=speech`), `vlh.*` otherwise.
Header values are handed to the exporter only: never logged, never written.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from harness import __version__
from harness.errors import VlhError
from harness.results.redact import redact_url
from harness.results.schema import EVENT_NAMES, STAGES
from harness.results.stats import number_or_none as _num
from harness.results.store import load_run

EAR_INSTANTS = [("user_speech_start_mono", "vlh.user_speech_start"), ("user_speech_end_mono", "vlh.user_speech_end"),
                ("agent_audio_start_mono", "vlh.agent_audio_start"), ("agent_audio_end_mono", "vlh.agent_audio_end"),
                ("first_audio_arrival_mono", "vlh.first_audio_arrival"),
                ("first_audio_playout_mono", "vlh.first_audio_playout")]
TURN_NUMBERS = ["ttfa_ms", "provider_ttft_ms", "gap_ms", "framework_v2v_ms", "unattributed_ms", "residual_ms",
                "clock_offset_ms", "clock_uncertainty_ms", "rtt_ms", "reply_duration_ms", "interruption_ms"]
BATCH = 512


class WallClock:
    """host monotonic s → epoch ns, through run.json `wall_clock` (else, approximately, `created_utc`)."""

    def __init__(self, meta: dict, df: pd.DataFrame):
        wc = meta.get("wall_clock") or {}
        if isinstance(wc.get("mono"), (int, float)) and isinstance(wc.get("unix_ns"), int):
            self.mono, self.unix_ns, self.exact = float(wc["mono"]), int(wc["unix_ns"]), True
        else:  # an older run: its creation second, at its first utterance
            created = datetime.fromisoformat(str(meta.get("created_utc")))
            first = pd.to_numeric(df.get("mic_start_mono"), errors="coerce").min() if len(df) else 0.0
            self.mono, self.unix_ns, self.exact = float(first), int(created.timestamp() * 1e9), False

    def ns(self, mono: float) -> int:
        return self.unix_ns + int(round((mono - self.mono) * 1e9))


def build_spans(run_dir: str | Path):
    """The run's spans (finished SDK ReadableSpans), not sent."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    meta, df = load_run(run_dir)
    if not len(df):
        raise VlhError(f"{run_dir}: the run has no turns to export")
    clock = WallClock(meta, df)
    resource = Resource.create({"service.name": "vlh", "service.version": __version__,
                                "vlh.run_id": str(meta.get("run_id")),
                                "vlh.agent_url": str(redact_url(meta.get("agent_url")) or ""),
                                "vlh.transport": str(meta.get("transport") or ""),
                                "vlh.wall_clock": "exact" if clock.exact else "approximate (created_utc)"})
    provider = TracerProvider(resource=resource)
    mem = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("vlh", __version__)
    events = _events(Path(run_dir))
    for call, turns in df.sort_values(["call", "turn"]).groupby("call", sort=True):
        starts = [_num(v) for v in turns["mic_start_mono"]] if "mic_start_mono" in turns else []
        ends = [_num(v) for c in ("agent_audio_end_mono", "agent_audio_start_mono", "mic_end_mono")
                if c in turns for v in turns[c]]
        starts, ends = [v for v in starts if v is not None], [v for v in ends if v is not None]
        if not starts:
            continue
        root = tracer.start_span("vlh.call", start_time=clock.ns(min(starts)), attributes={
            "vlh.run_id": str(meta.get("run_id")), "vlh.call": int(call),
            "vlh.scenario": str(meta.get("scenario") or ""),
            "vlh.agent_call_id": str(turns["agent_call_id"].iloc[0]) if "agent_call_id" in turns else ""})
        ctx = trace.set_span_in_context(root)
        for _, r in turns.iterrows():
            _turn_span(tracer, ctx, r, clock, events.get((int(call), int(r["turn"])), []), Status, StatusCode)
        root.end(end_time=clock.ns(max(ends + starts)))
    provider.force_flush()
    spans = list(mem.get_finished_spans())
    provider.shutdown()
    return spans


def _events(run_dir: Path) -> dict:
    p = run_dir / "events.parquet"
    if not p.exists():
        return {}
    ev = pd.read_parquet(p)
    out: dict = {}
    for _, e in ev.iterrows():
        out.setdefault((int(e["call"]), int(e["turn"])), []).append(e)
    return out


def _turn_span(tracer, ctx, r, clock: WallClock, events, Status, StatusCode) -> None:
    from opentelemetry import trace

    t0 = _num(r.get("mic_start_mono"))
    if t0 is None:
        return
    t1 = max([v for v in (_num(r.get(c)) for c in ("agent_audio_end_mono", "agent_audio_start_mono",
                                                     "mic_end_mono")) if v is not None] + [t0])
    attrs = {"vlh.turn": int(r["turn"]), "vlh.status": str(r.get("status")), "vlh.text": str(r.get("text") or "")}
    for c in TURN_NUMBERS:
        v = _num(r.get(c))
        if v is not None:
            attrs[f"vlh.{c}"] = v
    if r.get("anomalies"):
        attrs["vlh.anomalies"] = str(r.get("anomalies"))[:2000]
    if r.get("provider_ttft_source"):
        attrs["vlh.provider_ttft_source"] = str(r.get("provider_ttft_source"))
    span = tracer.start_span("vlh.turn", context=ctx, start_time=clock.ns(t0), attributes=attrs)
    if str(r.get("status")) != "ok":
        span.set_status(Status(StatusCode.ERROR, str(r.get("status"))))
    for col, name in EAR_INSTANTS:
        v = _num(r.get(col))
        if v is not None:
            span.add_event(name, {"vlh.source": "measured"}, timestamp=clock.ns(v))
    for e in events:
        if e["name"] in EVENT_NAMES and _num(e["t_mono"]) is not None:
            span.add_event(f"vlh.{e['name']}", {"vlh.source": str(e["source"]),
                                                "vlh.uncertainty_ms": float(e["uncertainty_ms"] or 0.0),
                                                "vlh.origin": str(e.get("origin") or "")},
                           timestamp=clock.ns(float(e["t_mono"])))
    sctx = trace.set_span_in_context(span)
    try:
        stages = json.loads(r.get("stages_json") or "[]")
    except ValueError:
        stages = []
    for st in stages:
        _stage_span(tracer, sctx, st, r, clock)
    span.end(end_time=clock.ns(t1))


def _stage_span(tracer, ctx, st: dict, r, clock: WallClock) -> None:
    name, kind = str(st.get("name")), str(st.get("kind") or "stage")
    start = _num(st.get("start_mono"))
    ms = _num(r.get(f"{name}_ms")) if kind == "stage" and name in STAGES else None
    ms = ms if ms is not None else _num(st.get("ms"))
    if start is None or ms is None:
        return
    attrs = {"vlh.stage": name, "vlh.kind": kind, "vlh.source": str(st.get("source") or ""), "vlh.ms": ms,
             "vlh.covers": [str(c) for c in st.get("covers") or []]}
    if kind == "stage" and name == "llm_ttft":
        attrs.update({"gen_ai.operation.name": "chat", "gen_ai.response.time_to_first_chunk": ms / 1e3})
    if kind == "stage" and name == "tts_ttfb":
        attrs["gen_ai.output.type"] = "speech"
    span_name = f"vlh.stage.{name}" if kind == "stage" else f"vlh.{kind}"
    end = clock.ns(start + ms / 1e3)
    s0 = clock.ns(start)
    if end < s0:  # a negative residual: OTLP spans cannot run backwards; the signed value is in vlh.ms
        s0, end = end, s0
    tracer.start_span(span_name, context=ctx, start_time=s0, attributes=attrs).end(end_time=end)


def traces_url(endpoint: str) -> str:
    """A collector URL with the OTLP traces path: `http://h:4318` → `http://h:4318/v1/traces` (query kept)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VlhError(f"--endpoint {redact_url(endpoint)!r}: expected an http(s)://host[:port][/v1/traces] URL")
    path = parts.path if parts.path.rstrip("/").endswith("/v1/traces") else parts.path.rstrip("/") + "/v1/traces"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def export_run(run_dir: str | Path, endpoint: str, headers: dict | None = None, timeout_s: float = 10.0) -> int:
    """Send the run's traces to an OTLP/HTTP endpoint (…/v1/traces). Returns the number of spans sent."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    spans = build_spans(run_dir)
    url = traces_url(endpoint)
    exporter = OTLPSpanExporter(endpoint=url, headers=dict(headers or {}), timeout=timeout_s)
    try:
        for i in range(0, len(spans), BATCH):
            if exporter.export(spans[i:i + BATCH]) is not SpanExportResult.SUCCESS:
                raise VlhError(f"OTLP export to {redact_url(url)} failed (spans {i}…{i + BATCH}); is a collector "
                               "listening there, and does it accept these headers?")
    finally:
        exporter.shutdown()
    return len(spans)
