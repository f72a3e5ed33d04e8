"""vlh's media-stream formats (harness/transports/telephony/providers.py) against pipecat 1.14's own code for each
provider: pipecat's runner must recognise vlh's `connected`/`start` (and read its stream and call ids), pipecat's
serializer must decode vlh's `media` to the samples vlh sent, and vlh must decode what pipecat's serializer sends
(`media`/`playAudio`, `clear`/`clearAudio`) back to the samples pipecat was given."""

import asyncio
import json
from types import SimpleNamespace

import numpy as np
import pytest
from pipecat.frames.frames import InputAudioRawFrame, InterruptionFrame, OutputAudioRawFrame
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.exotel import ExotelFrameSerializer
from pipecat.serializers.plivo import PlivoFrameSerializer
from pipecat.serializers.telnyx import TelnyxFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer

from harness.audio import mulaw
from harness.transports.telephony.providers import provider

STREAM, CALL = "MZ0123456789abcdef", "CA0123456789abcdef"


def serializer(name: str):
    if name == "twilio":
        return TwilioFrameSerializer(STREAM, CALL, params=TwilioFrameSerializer.InputParams(auto_hang_up=False,
                                                                                             sample_rate=8000))
    if name == "telnyx":
        return TelnyxFrameSerializer(STREAM, "PCMU", "PCMU", CALL,
                                     params=TelnyxFrameSerializer.InputParams(auto_hang_up=False, sample_rate=8000))
    if name == "plivo":
        return PlivoFrameSerializer(STREAM, CALL, params=PlivoFrameSerializer.InputParams(auto_hang_up=False,
                                                                                          sample_rate=8000))
    return ExotelFrameSerializer(STREAM, CALL, params=ExotelFrameSerializer.InputParams(sample_rate=8000))


def speech(n: int = 160) -> np.ndarray:
    t = np.arange(n) / 8000
    return mulaw.float_to_pcm16(0.4 * np.sin(2 * np.pi * 300 * t) * np.hanning(n))


class _Socket:
    """What pipecat's runner reads the handshake from: `iter_text()` (the provider's first messages)."""

    def __init__(self, messages):
        self.messages = messages

    def iter_text(self):
        async def gen():
            for m in self.messages:
                yield m
        return gen()


PROVIDERS = ["twilio", "telnyx", "plivo", "exotel"]


@pytest.mark.parametrize("name", PROVIDERS)
def test_pipecat_recognises_vlhs_start(name):
    p = provider(name)
    msgs = [json.dumps(m) for m in (p.connected(), p.start(STREAM, CALL, {"k": "v"}, 1)) if m is not None]
    kind, data = asyncio.run(parse_telephony_websocket(_Socket(msgs)))
    assert kind == name
    assert data["stream_id"] == STREAM and data["call_id"] == CALL


@pytest.mark.parametrize("name", PROVIDERS)
def test_pipecat_decodes_vlhs_media(name):
    p = provider(name)
    pcm = speech()
    audio = mulaw.encode(pcm) if p.encoding == "mulaw" else pcm.astype("<i2").tobytes()
    ser = serializer(name)

    async def go():
        await ser.setup(SimpleNamespace(audio_in_sample_rate=8000))
        return await ser.deserialize(json.dumps(p.media(STREAM, 2, 1, 0, audio)))

    frame = asyncio.run(go())
    assert isinstance(frame, InputAudioRawFrame) and frame.sample_rate == 8000
    got = np.frombuffer(frame.audio, "<i2")
    want = mulaw.decode(audio) if p.encoding == "mulaw" else pcm
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", PROVIDERS)
def test_vlh_decodes_pipecats_media_and_clear(name):
    p = provider(name)
    pcm = speech(800)
    ser = serializer(name)

    async def go():
        await ser.setup(SimpleNamespace(audio_in_sample_rate=8000))
        media = await ser.serialize(OutputAudioRawFrame(pcm.astype("<i2").tobytes(), 8000, 1))
        clear = await ser.serialize(InterruptionFrame())
        return media, clear

    media, clear = asyncio.run(go())
    m = p.parse(media)
    assert m.kind == "media" and m.stream in (None, STREAM)
    got = mulaw.decode(m.payload) if p.encoding == "mulaw" else np.frombuffer(m.payload, "<i2")
    want = mulaw.decode(mulaw.encode(pcm)) if p.encoding == "mulaw" else pcm
    assert np.array_equal(got, want)
    c = p.parse(clear)
    assert c.kind == "clear" and c.stream in (None, STREAM)
