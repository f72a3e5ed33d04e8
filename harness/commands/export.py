"""`vlh export otlp RUN_DIR --endpoint URL [--header K=V]`: send a finished run to a tracing backend as OTLP traces.

One trace per call, a span per turn, a child span per attributed stage, the ear-level instants as span events
(harness/telemetry/otlp_export.py; docs/opentelemetry.md). Header values are used for the request only.
"""

from __future__ import annotations

import os

from harness.errors import VlhError


def register(sub) -> None:
    p = sub.add_parser("export", help="send a run folder elsewhere (otlp: as OpenTelemetry traces)",
                       description="Send a finished run folder to another tool. `otlp`: one OpenTelemetry trace "
                       "per call (a span per turn, a child span per attributed stage on the reconciled host clock, "
                       "ear-level instants as span events) over OTLP/HTTP, with the run's real wall-clock times.")
    fmt = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    o = fmt.add_parser("otlp", help="OpenTelemetry traces over OTLP/HTTP (protobuf)")
    o.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `vlh run`")
    o.add_argument("--endpoint", required=True, metavar="URL",
                   help="the collector's OTLP/HTTP traces URL (e.g. http://localhost:4318/v1/traces; a URL "
                   "without /v1/traces gets it)")
    o.add_argument("--header", action="append", default=[], metavar="K=V",
                   help="an HTTP header for the collector (repeatable), e.g. x-honeycomb-team=$KEY; V '$VAR' or "
                   "'env:VAR' reads the environment. Never logged or written")
    o.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds per request [10]")
    o.set_defaults(func=main)


def parse_headers(pairs: list[str], flag: str = "--header") -> dict:
    """K=V pairs; V `$VAR` / `env:VAR` is read from the environment. Errors name the key, never the value."""
    out = {}
    for raw in pairs:
        if "=" not in raw:
            raise VlhError(f"{flag}: expected K=V (got a value without '=')")
        k, v = raw.split("=", 1)
        k, v = k.strip(), v.strip()
        if not k:
            raise VlhError(f"{flag}: the header name is empty")
        var = v[1:] if v.startswith("$") else v[4:] if v.startswith("env:") else None
        if var is not None:
            if var not in os.environ:
                raise VlhError(f"{flag} {k}: the environment variable {var} is not set")
            v = os.environ[var]
        out[k] = v
    return out


def main(args) -> int:
    from harness.results.redact import redact_url
    from harness.telemetry.otlp_export import export_run

    n = export_run(args.run_dir, args.endpoint, parse_headers(args.header), args.timeout)
    print(f"vlh: {n} spans sent to {redact_url(args.endpoint)}")
    return 0
