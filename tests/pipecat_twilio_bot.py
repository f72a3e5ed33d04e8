"""A real pipecat 1.14 phone bot: `FastAPIWebsocketTransport` + `TwilioFrameSerializer` (auto hang-up off, no
credentials) on ws://127.0.0.1:PORT/ws, the scripted STT / LLM / TTS of tests/pipecat_bot.py (imported, not copied),
Silero VAD with `stop_secs` and `SpeechTimeoutUserTurnStopStrategy`. It reads Twilio's `connected`/`start` messages
itself (as pipecat's runner does), then runs one pipeline per call. A barge-in makes pipecat send `clear`.

Run it in its own process:  python tests/pipecat_twilio_bot.py --port 7871 [--config '{"stop_secs": 0.2}']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

import uvicorn
from fastapi import FastAPI, WebSocket
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

sys.path.insert(0, str(Path(__file__).parent))
from pipecat_bot import TTS_RATE, BotConfig, ScriptedLLM, ScriptedSTT, ToneTTS  # noqa: E402


def build_worker(websocket: WebSocket, stream_sid: str, call_sid: str, cfg: BotConfig) -> PipelineWorker:
    serializer = TwilioFrameSerializer(stream_sid, call_sid,
                                       params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    transport = FastAPIWebsocketTransport(websocket, FastAPIWebsocketParams(
        audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False, serializer=serializer,
        allowed_origins=[]))
    vad = SileroVADAnalyzer(params=VADParams(stop_secs=cfg.stop_secs))
    strategies = UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=cfg.user_speech_timeout)])
    user_agg, assistant_agg = LLMContextAggregatorPair(
        LLMContext(), user_params=LLMUserAggregatorParams(vad_analyzer=vad, user_turn_strategies=strategies))
    pipeline = Pipeline([transport.input(), ScriptedSTT(cfg), user_agg, ScriptedLLM(cfg), ToneTTS(cfg),
                         transport.output(), assistant_agg])
    return PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=TTS_RATE,
                                                          enable_metrics=True), idle_timeout_secs=None)


def app_for(cfg: BotConfig) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        start = None
        while start is None:  # Twilio: `connected`, then `start`
            msg = json.loads(await websocket.receive_text())
            if msg.get("event") == "start":
                start = msg
        worker = build_worker(websocket, start["start"]["streamSid"], start["start"]["callSid"], cfg)
        await PipelineRunner(handle_sigint=False).run(worker)

    return app


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=7871)
    p.add_argument("--config", default="{}", help="BotConfig fields as JSON")
    a = p.parse_args(argv)
    cfg = BotConfig(**json.loads(a.config))
    print(f"pipecat twilio bot on ws://127.0.0.1:{a.port}/ws {json.dumps(asdict(cfg))}", flush=True)
    uvicorn.run(app_for(cfg), host="127.0.0.1", port=a.port, log_level="warning", ws="websockets")


if __name__ == "__main__":
    main()
