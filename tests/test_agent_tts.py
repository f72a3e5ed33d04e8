"""The reference agent's TTS: engines and recorded WAV files, sharpened so the first voiced sample is sample 0."""

import asyncio

import numpy as np
import pytest

from harness.agent.config import build_config
from harness.agent.tts import Tts, WavDir, slug
from harness.audio.synth import sharpen, synthesize
from harness.audio.wavio import write_wav
from harness.errors import VlhError


def _speak(tts, *texts):
    async def go():
        return [await tts.prepare(t) for t in texts]
    try:
        return asyncio.run(go())
    finally:
        tts.close()


@pytest.mark.parametrize("engine,voice", [("flite", "slt"), ("festival", "kal"), ("espeak", "en-us")])
def test_engine_speaks_the_reply_sharpened(tmp_path, engine, voice):
    (sp,) = _speak(Tts(voice, None, cache_dir=tmp_path, engine=engine), "We open at ten.")
    want, _ = sharpen(synthesize("We open at ten.", voice, None, tmp_path, engine))
    assert sp.first_voiced == 0 and len(sp.pcm) == len(want)
    assert np.max(np.abs(sp.pcm.astype(np.float64) / 32767 - want)) < 1.5 / 32767  # the engine's audio, int16


def test_bad_voice_fails_at_start_naming_the_engine(tmp_path):
    with pytest.raises(VlhError, match="flite has no such voice"):
        Tts("en-us", None, cache_dir=tmp_path, engine="flite")


def _recordings(folder, names, engine="flite", voice="awb"):
    folder.mkdir()
    for i, name in enumerate(names):
        a = synthesize(f"Recorded reply number {i + 1}.", voice, None, folder / ".cache", engine)
        write_wav(folder / name, np.concatenate([np.zeros(4800, np.float32), a]), 48000)
    return folder


def test_wav_dir_by_name_then_by_order(tmp_path):
    d = _recordings(tmp_path / "rec", ["b-first.wav", "c-second.wav", "we-open-at-ten.wav"])
    wd = WavDir(d)
    assert wd.pick("Hello there.").name == "b-first.wav"  # first sentence asked → first file by name
    assert wd.pick("We open at ten.").name == "we-open-at-ten.wav"  # its slug names a file
    assert wd.pick("Anything else?").name == "c-second.wav"
    assert wd.pick("Hello there.").name == "b-first.wav"  # stable
    assert wd.pick("A fourth one.").name == "we-open-at-ten.wav"  # third by order (all files cycle)
    assert wd.pick("A fifth one.").name == "b-first.wav"


def test_wav_dir_reply_is_the_recording_sharpened(tmp_path):
    d = _recordings(tmp_path / "rec", ["one.wav"])
    (sp,) = _speak(Tts(engine=f"wav-dir:{d}", cache_dir=tmp_path), "Whatever the text says.")
    from harness.audio.synth import load_utterance

    want, info = sharpen(load_utterance(d / "one.wav"))
    assert sp.first_voiced == 0 and len(sp.pcm) == len(want) and sp.source_start == info["source_start"] > 4800


def test_config_checks_the_engine():
    assert build_config(None, {"tts_engine": "Flite"}).tts_engine == "flite"
    with pytest.raises(VlhError, match="tts_engine: .*unknown TTS engine .*espeak, flite, festival or wav-dir:PATH"):
        build_config(None, {"tts_engine": "polly"})
    with pytest.raises(VlhError, match="tts_engine: .*is not a folder"):
        build_config(None, {"tts_engine": "wav-dir:/no/such/folder"})


def test_config_wav_dir_without_wavs(tmp_path):
    with pytest.raises(VlhError, match="holds no .wav files"):
        build_config(None, {"tts_engine": f"wav-dir:{tmp_path}"})
    d = _recordings(tmp_path / "rec", ["x.WAV"])
    assert build_config(None, {"tts_engine": f"wav-dir:{d}"}).tts_engine == f"wav-dir:{d.resolve()}"


def test_slug():
    assert slug("We open at ten.") == "we-open-at-ten" and slug("It's 5 o'clock!") == "its-5-oclock"
