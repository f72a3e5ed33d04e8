"""A real pipecat 1.14 voice bot with scripted services, for tests that measure it with vlh (issue #14).

Built only from pipecat's public API: SmallWebRTC transport served over HTTP on 127.0.0.1 (`POST /api/offer`),
Silero VAD (`stop_secs`), `SpeechTimeoutUserTurnStopStrategy`, scripted STT / LLM / TTS with known delays and no
network (the TTS speaks a 440 Hz tone), the RTVI processor + observer, and `UserBotLatencyObserver`, whose
`on_latency_breakdown` (pipecat's own stage figures) is appended as one JSON line per turn to `--breakdown`.
With `--otlp-endpoint URL` (issue #18) the bot runs with pipecat's tracing on (`setup_tracing` + an OTLP/HTTP
exporter, `enable_tracing=True`, the conversation id = the WebRTC pc_id) and its scripted services are built on
pipecat's service classes with pipecat's own tracing decorators, so it exports pipecat's real span tree.

Run it in its own process (its own event loop):  python tests/pipecat_bot.py --port 7861 --breakdown out.jsonl
Other tests reuse `BotConfig`, `build_worker` (observers and `enable_tracing` are injectable) and `serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from aiohttp import web
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    Frame, LLMContextFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame,
    TranscriptionFrame, TTSAudioRawFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi.observer import RTVIObserverParams
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.time import time_now_iso8601
from pipecat.utils.tracing.service_decorators import traced_llm, traced_stt, traced_tts

TTS_RATE = 24000


@dataclass
class BotConfig:
    """The bot's settings; every delay is what the scripted service waits, in seconds."""
    stop_secs: float = 0.2  # Silero VAD: silence heard before it calls the speech over
    user_speech_timeout: float = 0.6  # SpeechTimeoutUserTurnStopStrategy: wait after the VAD end
    stt_secs: float = 0.05  # VAD end -> final transcript
    llm_ttft_secs: float = 0.3  # LLM request -> first token
    first_sentence_secs: float = 0.3  # first token -> rest of the first sentence
    tts_secs: float = 0.13  # sentence -> first audio
    vad_user_speaking_enabled: bool = True  # RTVI `vad-user-*` messages (pipecat's default: off; both are tested)
    reply: list[str] = field(default_factory=lambda: ["Sure", ", here it is. ", "It is a tone."])


class ScriptedSTT(FrameProcessor):
    """A final transcript `stt_secs` after each VAD end (the VAD frames reach it upstream from the aggregator)."""

    def __init__(self, cfg: BotConfig):
        super().__init__(name="ScriptedSTTService")
        self._cfg = cfg
        self._task: asyncio.Task | None = None

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._task = self.create_task(self._transcribe())
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self._task:
            await self.cancel_task(self._task)
            self._task = None
        await self.push_frame(frame, direction)

    async def _transcribe(self):
        await self.start_ttfb_metrics()
        await asyncio.sleep(self._cfg.stt_secs)
        await self.stop_ttfb_metrics()
        instant("stt_final")
        await self.push_frame(TranscriptionFrame("hello there", "user", time_now_iso8601(), finalized=True))


class ScriptedLLM(FrameProcessor):
    """Answers each context: response start, `llm_ttft_secs`, first token, `first_sentence_secs`, the rest."""

    def __init__(self, cfg: BotConfig):
        super().__init__(name="ScriptedLLMService")
        self._cfg = cfg

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            self.create_task(self._answer())
            return
        await self.push_frame(frame, direction)

    async def _answer(self):
        cfg = self._cfg
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_ttfb_metrics()
        await asyncio.sleep(cfg.llm_ttft_secs)
        await self.stop_ttfb_metrics()
        await self.push_frame(LLMTextFrame(cfg.reply[0]))
        await asyncio.sleep(cfg.first_sentence_secs)
        for token in cfg.reply[1:]:
            await self.push_frame(LLMTextFrame(token))
        await self.push_frame(LLMFullResponseEndFrame())


class ToneTTS(TTSService):
    """`tts_secs` after each sentence, 0.5 s of a 440 Hz tone (audible from its first sample)."""

    def __init__(self, cfg: BotConfig):
        super().__init__(name="ToneTTSService", sample_rate=TTS_RATE, push_start_frame=True, push_stop_frames=True)
        self._cfg = cfg

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str):
        instant("tts_request")
        await asyncio.sleep(self._cfg.tts_secs)
        n = int(TTS_RATE * 0.5)
        tone = (0.3 * 32767 * np.sin(2 * math.pi * 440 * np.arange(n) / TTS_RATE)).astype(np.int16)
        chunk = TTS_RATE // 50
        for i in range(0, n, chunk):
            if not i:
                instant("tts_first_audio")
            yield TTSAudioRawFrame(tone[i:i + chunk].tobytes(), TTS_RATE, 1, context_id=context_id)


class TracedScriptedSTT(STTService):
    """ScriptedSTT on pipecat's STTService, for tracing: the same transcript `stt_secs` after each VAD end, but
    the service's own TTFB (from VAD stop − stop_secs) and pipecat's `traced_stt` span (speech start → the
    finalized transcript, `metrics.ttfb` from the TTFBMetricsData), as every pipecat STT service has."""

    def __init__(self, cfg: BotConfig):
        super().__init__(name="ScriptedSTTService")
        self._cfg = cfg
        self._task: asyncio.Task | None = None

    def can_generate_metrics(self) -> bool:
        return True

    @traced_stt
    async def run_stt(self, audio: bytes):
        yield None  # the audio is not transcribed: the transcript comes from the VAD end (below)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._task = self.create_task(self._transcribe())
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self._task:
            await self.cancel_task(self._task)
            self._task = None

    async def _transcribe(self):
        await asyncio.sleep(self._cfg.stt_secs)
        instant("stt_final")
        await self.push_frame(TranscriptionFrame("hello there", "user", time_now_iso8601(), finalized=True))


class TracedScriptedLLM(LLMService):
    """ScriptedLLM on pipecat's LLMService, for tracing: `_process_context` under `traced_llm`, shaped like
    OpenAILLMService's (response start, TTFB from the request, the tokens, response end)."""

    def __init__(self, cfg: BotConfig):
        super().__init__(name="ScriptedLLMService")
        self._cfg = cfg

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            try:
                await self._process_context(frame.context)
            finally:
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    @traced_llm
    async def _process_context(self, context: LLMContext):
        cfg = self._cfg
        instant("llm_request")
        await self.start_ttfb_metrics()
        await asyncio.sleep(cfg.llm_ttft_secs)
        await self.stop_ttfb_metrics()
        instant("llm_first_token")
        await self.push_frame(LLMTextFrame(cfg.reply[0]))
        await asyncio.sleep(cfg.first_sentence_secs)
        for token in cfg.reply[1:]:
            await self.push_frame(LLMTextFrame(token))


class TracedToneTTS(ToneTTS):
    """ToneTTS with pipecat's `traced_tts` (the `tts` span: audio context opened → stopped, `metrics.ttfb`)."""

    @traced_tts
    async def run_tts(self, text: str, context_id: str):
        async for frame in super().run_tts(text, context_id):
            yield frame


def breakdown_record(breakdown) -> dict:
    """pipecat's LatencyBreakdown as plain JSON: contributions by key (seconds), ttfb, total."""
    return {
        "wall": time.time(),
        "total_secs": breakdown.total_secs,
        "contributions": [{"key": c.key, "owner": c.owner, "start_time": c.start_time,
                           "duration_secs": c.duration_secs} for c in breakdown.contributions],
        "ttfb": [{"processor": t.processor, "duration_secs": t.duration_secs} for t in breakdown.ttfb],
        "text_aggregation_secs": breakdown.text_aggregation.duration_secs if breakdown.text_aggregation else None,
        "user_turn_secs": breakdown.user_turn_secs,
    }


def build_worker(connection: SmallWebRTCConnection, cfg: BotConfig, *, observers: list | None = None,
                 enable_tracing: bool = False, conversation_id: str | None = None) -> PipelineWorker:
    """The pipeline for one client. `observers` are added to the worker (e.g. a UserBotLatencyObserver).
    With `enable_tracing` the services are the Traced* ones (pipecat's span tree) and the conversation span
    carries `conversation_id`."""
    transport = SmallWebRTCTransport(connection, TransportParams(audio_in_enabled=True, audio_out_enabled=True))
    vad = SileroVADAnalyzer(params=VADParams(stop_secs=cfg.stop_secs))
    strategies = UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=cfg.user_speech_timeout)])
    user_agg, assistant_agg = LLMContextAggregatorPair(
        LLMContext(), user_params=LLMUserAggregatorParams(vad_analyzer=vad, user_turn_strategies=strategies))
    stt, llm, tts = ((TracedScriptedSTT, TracedScriptedLLM, TracedToneTTS) if enable_tracing
                     else (ScriptedSTT, ScriptedLLM, ToneTTS))
    pipeline = Pipeline([transport.input(), stt(cfg), user_agg, llm(cfg), tts(cfg),
                         transport.output(), assistant_agg])
    return PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=True, audio_out_sample_rate=TTS_RATE),
        observers=list(observers or []),
        enable_tracing=enable_tracing,
        conversation_id=conversation_id,
        rtvi_observer_params=RTVIObserverParams(vad_user_speaking_enabled=cfg.vad_user_speaking_enabled),
        idle_timeout_secs=None,
    )


def latency_observer(path: str | None) -> UserBotLatencyObserver:
    """pipecat's own stage figures; each breakdown appended to `path` as a JSON line."""
    obs = UserBotLatencyObserver()
    measured: list[float] = []  # on_latency_measured comes just before its breakdown

    @obs.event_handler("on_latency_measured")
    async def _latency(_obs, latency):
        measured.append(latency)

    @obs.event_handler("on_latency_breakdown")
    async def _record(_obs, breakdown):
        if path and breakdown.contributions:
            with open(path, "a") as f:
                f.write(json.dumps({**breakdown_record(breakdown),
                                    "latency_secs": measured[-1] if measured else None}) + "\n")
        measured.clear()

    return obs


INSTANTS: str | None = None  # --instants: the bot's own instants, JSON lines {"kind", "mono"} (host monotonic clock)


def instant(kind: str, mono: float | None = None) -> None:
    """Log one of the bot's own instants (the truth a test holds vlh's placement against; see --instants)."""
    if INSTANTS:
        with open(INSTANTS, "a") as f:
            f.write(json.dumps({"kind": kind, "mono": time.monotonic() if mono is None else mono}) + "\n")


class VADStopRecorder(BaseObserver):
    """The instant pipecat's VAD decided the user stopped speaking, on this host's monotonic clock (the harness's
    clock too: one machine), as `instant("vad_stop")`: the truth for vlh's endpointing stage, which vlh itself
    only sees as an RTVI message's arrival. The frame carries its decision's wall time; the offset to the
    monotonic clock is taken when the frame is first pushed, microseconds later."""

    async def on_push_frame(self, data: FramePushed):
        if isinstance(data.frame, VADUserStoppedSpeakingFrame) and data.first_push:
            mono, wall = time.monotonic(), time.time()
            instant("vad_stop", mono - (wall - data.frame.timestamp))


def setup_otlp_tracing(endpoint: str) -> None:
    """pipecat's `setup_tracing` with the OTLP/HTTP exporter (spans batched; OTEL_BSP_SCHEDULE_DELAY sets how
    often they are sent, 5000 ms by default)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from pipecat.utils.tracing.setup import setup_tracing

    if not setup_tracing("vlh-pipecat-test-bot", exporter=OTLPSpanExporter(endpoint=endpoint)):
        raise SystemExit("pipecat tracing could not be set up (is opentelemetry-sdk installed?)")


async def serve(cfg: BotConfig, port: int, breakdown_path: str | None, *, enable_tracing: bool = False,
                extra_observers=None) -> None:
    """`POST /api/offer` on 127.0.0.1:port; one pipeline per connection; runs until cancelled. With
    `enable_tracing`, call `setup_otlp_tracing` first; each conversation's id is its connection's pc_id."""
    tasks: set[asyncio.Task] = set()

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        conn = SmallWebRTCConnection()
        await conn.initialize(sdp=body["sdp"], type=body["type"])
        observers = [latency_observer(breakdown_path)] + list(extra_observers() if extra_observers else [])
        worker = build_worker(conn, cfg, observers=observers, enable_tracing=enable_tracing,
                              conversation_id=conn.pc_id if enable_tracing else None)

        @conn.event_handler("closed")
        async def _closed(_c):
            await worker.cancel()

        t = asyncio.create_task(PipelineRunner(handle_sigint=False).run(worker))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        return web.json_response(conn.get_answer())

    app = web.Application()
    app.router.add_post("/api/offer", offer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"pipecat bot ready on http://127.0.0.1:{port}/api/offer {json.dumps(asdict(cfg))}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=7861)
    p.add_argument("--breakdown", help="append pipecat's latency breakdown per turn (JSON lines) here")
    p.add_argument("--config", default="{}", help="BotConfig fields as JSON")
    p.add_argument("--instants", help="append the bot's own instants here (host monotonic clock, JSON lines): VAD "
                                      "stop decisions, transcripts, LLM request / first text, TTS request / first audio")
    p.add_argument("--nice", type=int, default=-10,
                   help="run at this nice value, as vlh's reference agent does (ignored where not permitted): a bot "
                        "starved behind batch work sends its RTVI messages late against its own observer's stamps")
    p.add_argument("--otlp-endpoint", help="tracing on: export pipecat's spans to this OTLP/HTTP URL (/v1/traces)")
    a = p.parse_args(argv)
    from harness.devices.priority import set_nice

    set_nice(a.nice)
    if a.otlp_endpoint:
        setup_otlp_tracing(a.otlp_endpoint)
    global INSTANTS
    INSTANTS = a.instants
    extra = (lambda: [VADStopRecorder()]) if a.instants else None
    asyncio.run(serve(BotConfig(**json.loads(a.config)), a.port, a.breakdown, enable_tracing=bool(a.otlp_endpoint),
                      extra_observers=extra))


if __name__ == "__main__":
    main()
