"""OTLP/HTTP trace bodies → flat spans, through the official `opentelemetry-proto` classes (no hand-written protobuf).

`decode_traces(body, content_type)` reads an `ExportTraceServiceRequest` sent as `application/x-protobuf` or
`application/json` (OTLP/JSON: ids are hex strings, not base64 as in the protobuf JSON mapping — converted before
`google.protobuf.json_format.Parse`). Anything else raises `OtlpBadRequest` (HTTP 400) or `OtlpUnsupported` (415).
Span times stay integers: epoch nanoseconds on the sender's wall clock. String values are cut at 2000 characters
(agents put whole chat contexts into attributes).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MAX_STRING = 2000
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class OtlpBadRequest(ValueError):
    """The body is not an OTLP trace request (HTTP 400)."""


class OtlpUnsupported(ValueError):
    """A content type vlh does not read (HTTP 415)."""


@dataclass
class OtlpSpan:
    trace_id: str  # hex
    span_id: str  # hex
    parent_id: str  # hex, "" for a root span
    name: str
    start_ns: int  # epoch ns, sender's wall clock
    end_ns: int
    attributes: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # [(name, time_ns, attributes)]
    resource: dict = field(default_factory=dict)
    scope: str = ""
    arrival: float = 0.0  # host monotonic instant the request arrived (set by the receiver)

    def attr(self, key: str, default=None):
        return self.attributes.get(key, default)

    def number(self, key: str) -> float | None:
        v = self.attributes.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def decode_traces(body: bytes, content_type: str | None) -> list[OtlpSpan]:
    req = parse_request(body, content_type)
    return spans_of(req)


def parse_request(body: bytes, content_type: str | None) -> ExportTraceServiceRequest:
    kind = media_type(content_type)
    req = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            req.ParseFromString(body)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise OtlpBadRequest(f"not an OTLP protobuf trace request ({exc})") from None
        if body and not req.resource_spans:  # parsed only as unknown fields: not OTLP
            raise OtlpBadRequest("not an OTLP protobuf trace request (no known field)")
    elif kind == JSON:
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise OtlpBadRequest(f"not JSON ({exc.__class__.__name__})") from None
        if not isinstance(doc, dict):
            raise OtlpBadRequest("not an OTLP/JSON trace request (top level is not an object)")
        try:
            _hex_ids_to_base64(doc)
            json_format.ParseDict(doc, req, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
            raise OtlpBadRequest(f"not an OTLP/JSON trace request ({str(exc)[:200]})") from None
    else:
        raise OtlpUnsupported(f"content type {kind or '(none)'!r}: vlh reads {PROTOBUF} and {JSON}")
    return req


def response_body(content_type: str | None) -> tuple[bytes, str]:
    """An empty ExportTraceServiceResponse (full success) in the request's encoding."""
    resp = ExportTraceServiceResponse()
    if media_type(content_type) == JSON:
        return json_format.MessageToJson(resp).encode(), JSON
    return resp.SerializeToString(), PROTOBUF


def spans_of(req: ExportTraceServiceRequest) -> list[OtlpSpan]:
    out = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                out.append(OtlpSpan(
                    trace_id=sp.trace_id.hex(), span_id=sp.span_id.hex(), parent_id=sp.parent_span_id.hex(),
                    name=sp.name[:MAX_STRING], start_ns=int(sp.start_time_unix_nano),
                    end_ns=int(sp.end_time_unix_nano), attributes=attributes(sp.attributes),
                    events=[(e.name[:MAX_STRING], int(e.time_unix_nano), attributes(e.attributes))
                            for e in sp.events],
                    resource=resource, scope=scope))
    return out


def attributes(kvs) -> dict:
    return {kv.key[:MAX_STRING]: any_value(kv.value) for kv in kvs}


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value[:MAX_STRING]
    if kind in ("bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    if kind == "bytes_value":
        return v.bytes_value[:MAX_STRING].hex()
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values[:100]]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values[:100]}
    return None


_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def _hex_ids_to_base64(node) -> None:
    """OTLP/JSON writes trace and span ids as hex (OTLP spec, "JSON Protobuf Encoding"); the protobuf JSON mapping
    reads bytes as base64."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _ID_KEYS and isinstance(v, str):
                try:
                    node[k] = base64.b64encode(bytes.fromhex(v)).decode() if v else ""
                except ValueError:
                    raise OtlpBadRequest(f"{k} {v[:40]!r} is not hex") from None
            else:
                _hex_ids_to_base64(v)
    elif isinstance(node, list):
        for x in node:
            _hex_ids_to_base64(x)
