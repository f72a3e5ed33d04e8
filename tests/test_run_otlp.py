"""`vlh run --otlp-listen` against the reference agent over real WebRTC, with its data-channel telemetry off: the
stages come only from OTLP spans. A pipecat-shaped exporter (the OpenTelemetry SDK, pipecat's span names and
attributes: harness/telemetry/otlp_pipecat.py) is fed live by the agent's ground-truth log, on the host's wall
clock, as a pipecat bot on this host would stamp them. While the run goes on, 1 MB of garbage and a 10 MB body
are posted to the receiver: refused (400, 413), counted in run.json, and the run finishes every turn.

Checked against the truth (harness/measure/verify.py): every agent stage within ±5 ms and marked `reconciled`,
`framework_v2v_ms` equal to the latency the exporter reported, and endpointing within ±5 ms.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from bot_process import free_port

from harness.measure.runner import RunConfig, run_measurement
from harness.measure.verify import errors
from harness.telemetry.otlp_receiver import OtlpReceiver

TEXTS = ["What time is it now?", "Book a table for two.", "How far is the airport?"]
SHORT = {"response": ["Sure thing.", "It is done.", "Twelve miles."], "telemetry": "none"}
TOL = 5.0


def _post(port: int, body: bytes, ctype="application/x-protobuf") -> int | None:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/v1/traces", body=body, headers={"Content-Type": ctype})
        return c.getresponse().status
    except OSError:
        return None  # the server may answer 413 and close before the body is sent


class PipecatShapedExporter(threading.Thread):
    """Tails agent-truth.jsonl; per finished turn, the spans pipecat's tracing would export for it."""

    def __init__(self, truth: Path, port: int):
        super().__init__(daemon=True)
        self.truth, self.port = truth, port
        self.stop = threading.Event()
        self.latencies: dict[tuple[str, int], float] = {}
        self.dispatch: dict[tuple[str, int], float] = {}  # the agent's transcript → LLM request (truth)
        self.posted: list[int | None] = []
        self.wall_minus_mono = time.time_ns() - int(time.monotonic() * 1e9)

    def ns(self, t: float) -> int:
        return int(round(t * 1e9)) + self.wall_minus_mono

    def run(self):
        provider = TracerProvider(resource=Resource.create({"service.name": "pipecat-bot"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{self.port}/v1/traces")))
        tracer = provider.get_tracer("pipecat.turn")
        convs: dict[str, object] = {}
        seen = 0
        while not self.stop.is_set():
            time.sleep(0.05)
            if not self.posted and _post(self.port, b"") is not None:  # the receiver is up: be hostile once
                self.posted = [_post(self.port, os.urandom(1 << 20)), _post(self.port, b"\0" * (10 << 20))]
            if not self.truth.exists():
                continue
            lines = self.truth.read_text().splitlines()
            for line in lines[seen:]:
                if not line.endswith("}"):
                    break
                seen += 1
                rec = json.loads(line)
                if rec.get("kind") != "turn" or rec.get("status") != "ok" or rec.get("stt_final") is None:
                    continue
                conv = convs.get(rec["call"])
                if conv is None:
                    conv = convs[rec["call"]] = tracer.start_span(
                        "conversation", start_time=self.ns(rec["user_speech_start_arrival"] - 1.0),
                        attributes={"conversation.id": rec["call"], "conversation.type": "voice"})
                self._turn(tracer, trace.set_span_in_context(conv), rec)
        for conv in convs.values():
            conv.end()
        provider.shutdown()

    def _turn(self, tracer, ctx, r):
        latency = r["audio_first_sent"] - r["user_speech_end_detected"]
        self.latencies[(r["call"], r["turn"])] = latency
        self.dispatch[(r["call"], r["turn"])] = r["llm_request"] - r["stt_final"]
        turn = tracer.start_span("turn", context=ctx, start_time=self.ns(r["user_speech_start_arrival"]),
                                 attributes={"turn.number": r["turn"], "turn.type": "conversation",
                                             "conversation.id": r["call"]})
        tctx = trace.set_span_in_context(turn)
        stt = tracer.start_span("stt", context=tctx, start_time=self.ns(r["user_speech_start_arrival"]),
                                attributes={"gen_ai.operation.name": "stt", "is_final": True,
                                            "metrics.ttfb": r["stt_final"] - r["user_speech_end_detected"]})
        stt.end(end_time=self.ns(r["stt_final"]))
        llm = tracer.start_span("llm", context=tctx, start_time=self.ns(r["llm_request"]),
                                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "reference",
                                            "metrics.ttfb": r["llm_first_token"] - r["llm_request"]})
        llm.end(end_time=self.ns(r["tts_request"]))
        tts = tracer.start_span("tts", context=tctx, start_time=self.ns(r["tts_request"]),
                                attributes={"gen_ai.operation.name": "tts", "gen_ai.output.type": "speech",
                                            "metrics.ttfb": r["tts_first_audio"] - r["tts_request"]})
        tts.end(end_time=self.ns(r["reply_end_sent"] or r["tts_first_audio"]))
        turn.set_attribute("turn.user_bot_latency_seconds", latency)
        turn.set_attribute("turn.was_interrupted", False)
        turn.end(end_time=self.ns(r["reply_end_sent"] or r["audio_first_sent"]))


@pytest.mark.slow
def test_run_with_otlp_only_telemetry(tmp_path):
    port = free_port()
    out = tmp_path / "run"
    exporter = PipecatShapedExporter(out / "agent-truth.jsonl", port)
    exporter.start()
    backend = OtlpReceiver("127.0.0.1", 0).start()  # where the run's own traces go (--otlp-endpoint)
    try:
        run_measurement(RunConfig(agent_overrides=SHORT, turns=3, texts=TEXTS, out_dir=out, report=False,
                                  progress=False, otlp_listen=f"127.0.0.1:{port}", otlp_endpoint=backend.url,
                                  otlp_headers={"x-api-key": "s3cret"}))
    finally:
        exporter.stop.set()
        exporter.join(10)
        backend.stop()
    meta = json.loads((out / "run.json").read_text())
    tel = meta["telemetry"]
    assert exporter.posted[0] == 400 and exporter.posted[1] in (413, None)
    assert tel["otlp_rejected"] == 2, tel
    assert tel["otlp_rejected_bad"] == 1 and tel["otlp_rejected_too_large"] == 1
    assert meta["otlp"]["frameworks"] == ["pipecat"] and meta["otlp"]["same_host"]
    df = pd.read_parquet(out / "turns.parquet")
    assert list(df["status"]) == ["ok"] * 3  # the run went on
    err = errors(out)
    assert len(err) == 3
    for stage in ("endpointing", "stt", "llm_ttft", "tts_ttfb", "agent_output"):
        assert (df[f"{stage}_source"] == "reconciled").all(), stage
        worst = err[f"{stage}_ms"].abs().max()
        assert worst <= TOL, f"{stage}: worst error {worst:.2f} ms {err[f'{stage}_ms'].round(2).tolist()}"
    for _, r in df.iterrows():
        # pipecat's spans do not mark the end of the user's turn (only RTVI does): transcript → LLM request is one
        # span covering turn_detection and llm_dispatch, equal to the agent's own
        merged = [sp for sp in json.loads(r["stages_json"]) if sp["covers"] == ["turn_detection", "llm_dispatch"]]
        assert len(merged) == 1, json.loads(r["stages_json"])
        want = exporter.dispatch[(r["agent_call_id"], int(r["turn"]))] * 1e3
        assert abs(merged[0]["ms"] - want) <= TOL, (merged[0], want)
        truth = exporter.latencies[(r["agent_call_id"], int(r["turn"]))]
        assert r["framework_v2v_ms"] == pytest.approx(truth * 1e3, abs=0.01)
        # the ear heard more than the framework says: uplink + transport + jitter buffer + playout
        assert r["ttfa_ms"] > r["framework_v2v_ms"]
    # --otlp-endpoint: the run's turns went out as traces, the agent's OTLP events among the span events
    sent = backend.spans()
    assert len([s for s in sent if s.name == "vlh.turn"]) == 3
    assert any(name == "vlh.stt_final" and attrs.get("vlh.origin", "").startswith("otlp:pipecat")
               for s in sent for name, _, attrs in s.events)
    assert meta["config"]["otlp_header_names"] == ["x-api-key"]
    assert "s3cret" not in (out / "run.json").read_text()
    ev = pd.read_parquet(out / "events.parquet")
    assert ev["origin"].str.startswith("otlp:pipecat").any()
    from harness.report.render import write_report

    html = write_report([out], out / "report.html").read_text()
    assert "pipecat says" in html and "it cannot see are uplink" in html
    print(err.round(3).to_string())
