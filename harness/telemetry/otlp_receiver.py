"""`vlh run --otlp-listen [HOST:]PORT`: an OTLP/HTTP trace receiver (POST /v1/traces) the agent exports to.

It runs in a thread of its own (its own event loop), so it serves whichever way the calls run. Each accepted
request's spans are kept with the host-monotonic instant they arrived; each request also stamps one pair
(host monotonic, host wall clock ns), which the clock reconciliation (otlp_clock.py) uses to put the agent's
epoch-ns span times on the host clock.

Limits (the network is not trusted): a body over 4 MB → 413 (checked on Content-Length before reading, and while
reading, and after gzip decompression); a body that is not an OTLP trace request → 400; a content type other than
protobuf or JSON → 415; more than `max_spans` spans kept → 503. Every refusal is counted (`otlp_rejected` and one
count per reason), answered with one line, and never stops the run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from collections import Counter

from aiohttp import web

from harness.errors import VlhError
from harness.telemetry.otlp_decode import OtlpBadRequest, OtlpSpan, OtlpUnsupported, decode_traces, response_body

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024
MAX_SPANS = 200_000
LOOPBACK_PEERS = ("127.", "::1", "::ffff:127.")


def parse_listen(spec: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[v6]:PORT` → (host, port); host defaults to 127.0.0.1."""
    s = str(spec).strip()
    host, _, port = s.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise VlhError(f"--otlp-listen {spec!r}: expected [HOST:]PORT, e.g. 4318 or 0.0.0.0:4318") from None
    if not 0 <= p <= 65535:
        raise VlhError(f"--otlp-listen {spec!r}: port must be 0…65535")
    return host, p


class OtlpReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 4318, max_body: int = MAX_BODY,
                 max_spans: int = MAX_SPANS):
        self.host, self.port, self.max_body, self.max_spans = host, port, max_body, max_spans
        self.counts: Counter = Counter()
        self.clock_pairs: list[tuple[float, int]] = []  # (host monotonic s, host wall ns), one per request
        self.peers: Counter = Counter()  # who sent accepted requests (loopback or not)
        self._spans: list[OtlpSpan] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.last_arrival: float | None = None

    # ---- life --------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1/traces"

    def start(self, timeout: float = 10.0) -> "OtlpReceiver":
        ready = threading.Event()
        error: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # noqa: BLE001 — reported to the starting thread
                error.append(exc)
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self.stamp()
        self._thread = threading.Thread(target=run, name="vlh-otlp-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise VlhError(f"OTLP receiver on {self.host}:{self.port} did not start within {timeout:.0f} s")
        if error:
            exc = error[0]
            raise VlhError(f"--otlp-listen {self.host}:{self.port}: cannot listen there "
                           f"({getattr(exc, 'strerror', None) or exc}); choose another port") from None
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/v1/traces", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- what came in ------------------------------------------------------------------------------------------
    def stamp(self) -> None:
        """One (monotonic, wall) pair, read back to back; the pair with the shorter read is kept."""
        best = None
        for _ in range(3):
            a = time.monotonic()
            w = time.time_ns()
            b = time.monotonic()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) / 2, w)
        with self._lock:
            self.clock_pairs.append((best[1], best[2]))

    def spans(self) -> list[OtlpSpan]:
        with self._lock:
            return list(self._spans)

    def same_host(self) -> bool:
        """Every accepted request came from a loopback address: the agent reads this host's wall clock."""
        return bool(self.peers) and all(p.startswith(LOOPBACK_PEERS) for p in self.peers)

    def _reject(self, status: int, reason: str, message: str) -> web.Response:
        self.counts["otlp_rejected"] += 1
        self.counts[f"otlp_rejected_{reason}"] += 1
        log.warning("OTLP receiver: refused a request (%d): %s", status, message)
        return web.Response(status=status, text=f"vlh OTLP receiver: {message}\n")

    async def _handle(self, request: web.Request) -> web.Response:
        arrival = time.monotonic()
        self.counts["otlp_requests"] += 1
        if request.content_length is not None and request.content_length > self.max_body:
            return self._reject(413, "too_large", f"body of {request.content_length} bytes is over the "
                                f"{self.max_body} byte limit")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, "too_large", f"body is over the {self.max_body} byte limit")
        enc = (request.headers.get("Content-Encoding") or "").lower().strip()
        if enc == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = d.decompress(body, self.max_body + 1)
            except zlib.error:
                return self._reject(400, "bad", "Content-Encoding gzip, but the body is not gzip")
            if len(body) > self.max_body or d.unconsumed_tail:
                return self._reject(413, "too_large", f"gzip body inflates past the {self.max_body} byte limit")
        elif enc not in ("", "identity"):
            return self._reject(415, "unsupported", f"Content-Encoding {enc!r}: vlh reads gzip or none")
        try:
            spans = decode_traces(body, request.content_type)
        except OtlpUnsupported as exc:
            return self._reject(415, "unsupported", str(exc))
        except OtlpBadRequest as exc:
            return self._reject(400, "bad", str(exc))
        with self._lock:
            if len(self._spans) + len(spans) > self.max_spans:
                full = True
            else:
                full = False
                for s in spans:
                    s.arrival = arrival
                self._spans.extend(spans)
        if full:
            return self._reject(503, "full", f"already holds {self.max_spans} spans this run")
        self.stamp()
        self.counts["otlp_accepted"] += 1
        self.counts["otlp_spans"] += len(spans)
        self.peers[str(request.remote or "")] += 1
        self.last_arrival = arrival
        data, ctype = response_body(request.content_type)
        return web.Response(body=data, content_type=ctype)

    async def wait_for(self, covered_until_ns: int, max_wait_s: float, quiet_s: float = 0.3,
                       call_id: str | None = None) -> bool:
        """Wait (≤ max_wait_s) until the traces are complete past `covered_until` (agent wall ns): a span ending at
        or after it has arrived, every trace holding such a span has its root (parentless) span too — a root ends
        last (pipecat's `conversation` when the call hangs up, with the last `turn` it closes) — and nothing new
        came for `quiet_s`. With `call_id`, once a trace carries it as `conversation.id` only that trace must be
        complete (other calls' conversations go on). True when that happened, False on timeout."""
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() < deadline:
            with self._lock:
                late = {s.trace_id for s in self._spans if s.end_ns >= covered_until_ns}
                rooted = {s.trace_id for s in self._spans if not s.parent_id}
                mine = {s.trace_id for s in self._spans if call_id and s.attributes.get("conversation.id") == call_id}
            late = late & mine if mine else late
            quiet = self.last_arrival is None or time.monotonic() - self.last_arrival >= quiet_s
            if late and late <= rooted and quiet:
                return True
            await asyncio.sleep(0.05)
        return False
