"""vlh's OTLP/HTTP receiver: real HTTP, real OpenTelemetry SDK exports, hostile bodies refused and counted.

1 MB of garbage → 400, 10 MB → 413 (announced, or streamed without a length, or a gzip bomb), an unknown content
type → 415; each counted in `otlp_rejected`, and the receiver goes on accepting a real export. OTLP/JSON (hex ids)
decodes to the same spans as protobuf.
"""

from __future__ import annotations

import gzip
import os

import aiohttp
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness.errors import VlhError
from harness.telemetry.otlp_decode import OtlpBadRequest, decode_traces
from harness.telemetry.otlp_receiver import OtlpReceiver, parse_listen

MB = 1024 * 1024


def _sdk_spans():
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    mem = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tr = provider.get_tracer("pipecat")
    with tr.start_as_current_span("conversation", attributes={"conversation.id": "c-1"}):
        with tr.start_as_current_span("turn", attributes={"turn.number": 1, "turn.user_bot_latency_seconds": 1.25}) as t:
            t.add_event("vlh.tts_first_audio", {"turn": 1})
            with tr.start_as_current_span("llm", attributes={"metrics.ttfb": 0.31, "gen_ai.request.model": "m"}):
                pass
    return list(mem.get_finished_spans())


@pytest.fixture
def receiver():
    with OtlpReceiver("127.0.0.1", 0) as rec:
        yield rec


async def _post(url, body, ctype="application/x-protobuf", **headers):
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body, headers={"Content-Type": ctype, **headers}) as r:
            return r.status, await r.text()


async def test_garbage_oversize_and_unknown_are_refused_and_counted(receiver):
    url = receiver.url
    garbage = os.urandom(MB)
    assert (await _post(url, garbage))[0] == 400
    assert (await _post(url, b"{not json" + os.urandom(MB), "application/json"))[0] == 400
    assert (await _post(url, b'{"resourceSpans": 7}', "application/json"))[0] == 400
    status, text = await _post(url, b"\0" * (10 * MB))
    assert status == 413 and "limit" in text

    async def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(10):
            yield b"\x0a" * MB

    assert (await _post(url, chunks()))[0] == 413
    assert (await _post(url, gzip.compress(b"\0" * (10 * MB)), **{"Content-Encoding": "gzip"}))[0] == 413
    assert (await _post(url, b"hello", "text/plain"))[0] == 415
    c = receiver.counts
    assert c["otlp_rejected"] == 7
    assert (c["otlp_rejected_bad"], c["otlp_rejected_too_large"], c["otlp_rejected_unsupported"]) == (3, 3, 1)
    assert receiver.spans() == []
    # ... and it goes on: a real SDK export is accepted after all that
    exp = OTLPSpanExporter(endpoint=url)
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert exp.export(_sdk_spans()) is SpanExportResult.SUCCESS
    exp.shutdown()
    got = {s.name: s for s in receiver.spans()}
    assert set(got) == {"conversation", "turn", "llm"}
    assert got["turn"].attributes["turn.user_bot_latency_seconds"] == 1.25
    assert got["turn"].events[0][0] == "vlh.tts_first_audio"
    assert got["llm"].parent_id == got["turn"].span_id and got["turn"].parent_id == got["conversation"].span_id
    assert receiver.same_host() and c["otlp_accepted"] == 1 and c["otlp_spans"] == 3


async def test_json_with_hex_ids_decodes_like_protobuf(receiver):
    spans = _sdk_spans()
    req = encode_spans(spans)
    doc = json_format.MessageToDict(req)
    import base64

    def hexify(node):  # OTLP/JSON: ids as hex (the protobuf JSON mapping would write base64)
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    node[k] = base64.b64decode(v).hex()
                else:
                    hexify(v)
        elif isinstance(node, list):
            for x in node:
                hexify(x)

    hexify(doc)
    import json

    status, _ = await _post(receiver.url, json.dumps(doc).encode(), "application/json")
    assert status == 200
    via_json = sorted(((s.trace_id, s.span_id, s.parent_id, s.name, s.start_ns, s.end_ns) for s in receiver.spans()))
    via_pb = sorted(((s.trace_id, s.span_id, s.parent_id, s.name, s.start_ns, s.end_ns)
                     for s in decode_traces(req.SerializeToString(), "application/x-protobuf")))
    assert via_json == via_pb
    assert via_pb[0][0] == format(spans[0].context.trace_id, "032x")


def test_decode_refuses_unknown_only_protobuf():
    with pytest.raises(OtlpBadRequest):
        decode_traces(b"\xf8\x07\x01", "application/x-protobuf")  # field 127 varint: valid wire, no OTLP field


def test_parse_listen():
    assert parse_listen("4318") == ("127.0.0.1", 4318)
    assert parse_listen("0.0.0.0:4318") == ("0.0.0.0", 4318)
    assert parse_listen("[::1]:4318") == ("::1", 4318)
    with pytest.raises(VlhError, match="expected"):
        parse_listen("localhost")


def test_busy_port_is_one_clear_error(receiver):
    with pytest.raises(VlhError, match="cannot listen there"):
        OtlpReceiver("127.0.0.1", receiver.port).start()


async def test_wait_ends_when_the_traces_past_the_last_utterance_have_their_root(receiver):
    """pipecat's last `turn` and the `conversation` end when the call hangs up: until the root arrived the trace
    is incomplete (its last turn's latency missing), so the wait goes on; once it came, the wait ends at once."""
    import asyncio
    import time

    spans = _sdk_spans()  # llm, turn, conversation (children end first)
    exp = OTLPSpanExporter(endpoint=receiver.url)
    after = min(s.end_time for s in spans) - 1  # every span ends after the "last utterance"
    await asyncio.to_thread(exp.export, [s for s in spans if s.name == "llm"])
    t0 = time.monotonic()
    assert not await receiver.wait_for(after, max_wait_s=0.8, quiet_s=0.05)  # no root yet: waited it all
    assert time.monotonic() - t0 >= 0.8
    await asyncio.to_thread(exp.export, [s for s in spans if s.name != "llm"])
    t0 = time.monotonic()
    assert await receiver.wait_for(after, max_wait_s=5, quiet_s=0.05)
    assert time.monotonic() - t0 < 1.0
    exp.shutdown()


async def test_wait_for_one_call_ignores_other_conversations(receiver):
    """Call c-1's conversation is complete; another call's (c-2, no root yet) does not hold c-1's wait."""
    import asyncio

    mine = _sdk_spans()  # conversation.id c-1, complete
    provider = TracerProvider()
    mem = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tr = provider.get_tracer("pipecat")
    conv = tr.start_span("conversation", attributes={"conversation.id": "c-2"})
    from opentelemetry import trace as otel_trace

    with tr.start_as_current_span("turn", context=otel_trace.set_span_in_context(conv),
                                  attributes={"conversation.id": "c-2"}):
        pass
    exp = OTLPSpanExporter(endpoint=receiver.url)
    await asyncio.to_thread(exp.export, mine + list(mem.get_finished_spans()))
    after = min(s.end_time for s in mine) - 1
    assert await receiver.wait_for(after, max_wait_s=3, quiet_s=0.05, call_id="c-1")
    assert not await receiver.wait_for(after, max_wait_s=0.5, quiet_s=0.05)  # no call id: c-2 holds it
    exp.shutdown()
