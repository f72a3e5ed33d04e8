"""The agent's HTTP front end (aiohttp), signalling compatible with pipecat's SmallWebRTC and aiortc's examples.

    POST  /api/offer   {"sdp", "type": "offer", "pc_id"?, "restart_pc"?, "request_data"?}
                       → {"sdp", "type": "answer", "pc_id"}
    PATCH /api/offer   {"pc_id", "candidates": [{"candidate", "sdp_mid", "sdp_mline_index"}]}
    GET   /health      {"status": "ok", "calls": n, ...}
(`/offer` is an alias of `/api/offer`.) Bad requests get HTTP 400 `{"error": "..."}`; the server keeps serving.

`request_data` (alias `requestData`) may hold `{"config": {knob: value}}`: per-call overrides of the agent's
configuration, validated like the CLI's (a bad key → 400 naming it).

In-process use:
    async with AgentServer(config, port=0, truth_log=None) as srv:
        srv.url            # http://127.0.0.1:<port>
        srv.truth.turns    # the ground-truth turn records so far
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web
from aiortc.sdp import candidate_from_sdp

from harness.agent.call import Call, OfferError
from harness.agent.config import AgentConfig, validate_config
from harness.agent.self_report import TelemetryClock
from harness.agent.truth import TruthLog
from harness.agent.tts import Tts
from harness.errors import VlhError

log = logging.getLogger(__name__)


def _error(status: int, msg: str) -> web.Response:
    return web.json_response({"error": msg}, status=status)


class AgentServer:
    def __init__(self, config: AgentConfig | None = None, *, host: str = "127.0.0.1", port: int = 7860,
                 truth_log=None, packet_log=None, memory: bool = True, memory_packets: bool | None = None,
                 tts_cache_dir=None):
        self.config = config or AgentConfig()
        self.host, self.port = host, port
        self.truth = TruthLog(truth_log, packet_log, memory=memory, memory_packets=memory_packets)
        self.clock = TelemetryClock(self.config.clock_offset_ms, self.config.clock_drift_ppm)
        self.tts = Tts(self.config.tts_voice, self.config.tts_rate, cache_dir=tts_cache_dir,
                       engine=self.config.tts_engine)
        self.calls: dict[str, Call] = {}
        self.n_calls = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifetime
    async def start(self) -> "AgentServer":
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/api/offer", self._offer)
        app.router.add_patch("/api/offer", self._patch)
        app.router.add_post("/offer", self._offer)
        app.router.add_patch("/offer", self._patch)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise VlhError(f"cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                           "choose another --port (0 = any free port)") from None
        sock = site._server.sockets[0]
        self.port = sock.getsockname()[1]
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.url = f"http://{host}:{self.port}"
        # synthesise the scripted replies now, so the first call's TTS wait is the configured one
        from harness.agent.llm import sentences
        for text in self.config.responses:
            for s in sentences(text):
                self.tts.prepare(s)
        return self

    async def warm(self) -> None:
        """Wait until the default replies are synthesised (raises the synthesiser's VlhError if any)."""
        from harness.agent.llm import sentences
        futs = [self.tts.prepare(s) for text in self.config.responses for s in sentences(text)]
        await asyncio.gather(*futs)

    async def stop(self) -> None:
        await asyncio.gather(*(c.close("agent stopped") for c in list(self.calls.values())),
                             return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.tts.close()
        self.truth.close()

    async def __aenter__(self) -> "AgentServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- handlers
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "calls": len(self.calls), "calls_total": self.n_calls,
                                  "turns_logged": len(self.truth.turns) if self.truth.memory else None})

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return _error(400, "the request body is not JSON; send {\"sdp\": ..., \"type\": \"offer\"}")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
        sdp, type_ = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or not sdp.strip():
            return _error(400, "missing \"sdp\": the body must carry the client's SDP offer as a string")
        if type_ != "offer":
            return _error(400, f"\"type\" must be \"offer\", got {type_!r}")
        pc_id = body.get("pc_id")
        restart = bool(body.get("restart_pc"))
        request_data = body.get("request_data", body.get("requestData"))
        existing = self.calls.get(pc_id) if isinstance(pc_id, str) else None
        try:
            if existing is not None and not restart:
                return web.json_response(await existing.renegotiate(sdp, type_))
            if existing is not None:
                await existing.close("restarted by the client")
            cfg = self._call_config(request_data)
        except OfferError as exc:
            return _error(400, str(exc))
        except VlhError as exc:
            return _error(400, str(exc))
        self.n_calls += 1
        new_id = f"vlh-{self.n_calls}-{uuid.uuid4().hex[:12]}"
        call = Call(cfg=cfg, index=self.n_calls, pc_id=new_id, tts=self.tts, truth=self.truth, clock=self.clock,
                    on_closed=self._closed, request_data=request_data)
        try:
            answer = await call.accept(sdp, type_)
        except OfferError as exc:
            await call.close(f"offer refused: {exc}")
            return _error(400, str(exc))
        except Exception as exc:
            log.exception("offer failed")
            await call.close(f"offer failed: {exc}")
            return _error(500, f"the agent could not answer the offer: {type(exc).__name__}: {exc}")
        self.calls[new_id] = call
        log.info("call %s started (%d active)", new_id, len(self.calls))
        return web.json_response(answer)

    def _call_config(self, request_data) -> AgentConfig:
        if not request_data:
            return self.config
        if not isinstance(request_data, dict):
            raise VlhError("\"request_data\" must be a JSON object")
        over = request_data.get("config")
        if over is None:
            return self.config
        if not isinstance(over, dict):
            raise VlhError("request_data.config must be a JSON object of knob: value")
        for k in ("clock_offset_ms", "clock_drift_ppm"):
            if k in over and over[k] != getattr(self.config, k):
                raise VlhError(f"request_data.config.{k}: the telemetry clock is per agent, not per call; "
                               "start the agent with the clock you want")
        merged = self.config.model_dump()
        merged.update(over)
        return validate_config(merged, "request_data.config")

    async def _patch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return _error(400, "the request body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("candidates", []), list):
            return _error(400, "expected {\"pc_id\", \"candidates\": [{\"candidate\", \"sdp_mid\", "
                               "\"sdp_mline_index\"}]}")
        call = self.calls.get(body.get("pc_id"))
        if call is None:
            return _error(404, f"no call with pc_id {body.get('pc_id')!r}")
        for c in body.get("candidates", []):
            try:
                text = c["candidate"]
                if text.startswith("candidate:"):
                    text = text[len("candidate:"):]
                if not text:
                    continue  # end-of-candidates
                cand = candidate_from_sdp(text)
                cand.sdpMid = c.get("sdp_mid", c.get("sdpMid"))
                cand.sdpMLineIndex = c.get("sdp_mline_index", c.get("sdpMLineIndex"))
                await call.add_candidate(cand)
            except Exception as exc:
                return _error(400, f"bad ICE candidate {c!r}: {exc}")
        return web.json_response({"status": "success"})

    def _closed(self, call: Call) -> None:
        self.calls.pop(call.pc_id, None)
        log.info("call %s ended: %s", call.pc_id, call.close_reason)


async def serve_forever(server: AgentServer, on_ready=None) -> None:
    await server.start()
    if on_ready:
        on_ready(server)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await server.stop()

