import numpy as np
import pytest

from harness.audio import synth
from harness.audio.synth import build_conversation, load_utterance, sharpen, synthesize
from harness.audio.wavio import write_wav
from harness.errors import VlhError

TEXT = "The quick brown fox jumps over the lazy dog"


def _voiced_span(a, sr=48000):
    loud = np.flatnonzero(np.abs(a) > 0.01)
    return (loud[-1] - loud[0]) / sr


def test_synthesize_gives_plausible_48k_mono(tmp_path):
    a = synthesize(TEXT, cache_dir=tmp_path)
    assert a.dtype == np.float32 and a.ndim == 1
    assert 1.5 < len(a) / 48000 < 6.0  # 9 words at 175 words/min ≈ 3 s
    assert 0.1 < np.abs(a).max() <= 1.0


def test_cache_hit_does_not_run_the_engine(tmp_path):
    first = synthesize("cache me if you can", cache_dir=tmp_path)
    runs = synth.ENGINE_RUNS
    again = synthesize("cache me   if you can", cache_dir=tmp_path)  # same text after whitespace folding
    assert synth.ENGINE_RUNS == runs
    assert np.array_equal(first, again)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    synthesize("cache me if you can", rate=250, cache_dir=tmp_path)  # another key: the engine runs
    assert synth.ENGINE_RUNS == runs + 1
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_damaged_cache_entry_is_replaced(tmp_path):
    synthesize("broken cache", cache_dir=tmp_path)
    (f,) = tmp_path.glob("*.npy")
    f.write_bytes(b"garbage")
    runs = synth.ENGINE_RUNS
    a = synthesize("broken cache", cache_dir=tmp_path)
    assert synth.ENGINE_RUNS == runs + 1 and len(a) > 4800


def test_rate_is_honoured(tmp_path):
    slow = _voiced_span(synthesize(TEXT, rate=120, cache_dir=tmp_path))
    fast = _voiced_span(synthesize(TEXT, rate=300, cache_dir=tmp_path))
    # speech time scales about as 1/rate (pauses scale a little less)
    assert 1.9 < slow / fast < 2.8


def test_voice_is_honoured(tmp_path):
    a = synthesize(TEXT, voice="gmw/en-us", cache_dir=tmp_path)
    b = synthesize(TEXT, voice="en-gb-scotland", cache_dir=tmp_path)  # short id form
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_alternating_voices_and_rates_stay_consistent(tmp_path):
    # espeak-ng's asynchronous command queue used to drop property changes; every result must match its key
    first = {}
    for i in range(3):
        for voice in ("gmw/en-us", "gmw/en-gb-x-rp"):
            for rate in (130, 260):
                a = synthesize(f"{TEXT} {i}", voice=voice, rate=rate, cache_dir=tmp_path / f"c{i}{voice[-2:]}{rate}")
                first.setdefault((voice, rate), []).append(_voiced_span(a))
    for (voice, rate), spans in first.items():
        assert max(spans) - min(spans) < 0.25, (voice, rate, spans)
    for voice in ("gmw/en-us", "gmw/en-gb-x-rp"):
        assert np.mean(first[(voice, 130)]) > 1.6 * np.mean(first[(voice, 260)])


@pytest.mark.parametrize("kw, match", [
    ({"voice": "no-such-voice"}, "no such voice"),
    ({"rate": 30}, "honours 80"),
    ({"rate": 5000}, "honours 80"),
])
def test_bad_voice_or_rate(tmp_path, kw, match):
    with pytest.raises(VlhError, match=match):
        synthesize("hello", cache_dir=tmp_path, **kw)


def test_empty_text(tmp_path):
    with pytest.raises(VlhError, match="empty"):
        synthesize("   ", cache_dir=tmp_path)


def test_implausible_output_is_an_error(tmp_path, monkeypatch):
    # the check itself: a one-word text that came out 20 s long, or silent, is refused
    with pytest.raises(VlhError, match="implausible"):
        synth._check(np.full(22050 * 20, 0.5, np.float32), "hello", 175, None)
    with pytest.raises(VlhError, match="silence"):
        synth._check(np.zeros(22050, np.float32), "hello", 175, None)


def test_load_utterance_mixes_and_resamples(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    write_wav(tmp_path / "s.wav", np.stack([left, left], axis=1), sr)
    a = load_utterance(tmp_path / "s.wav")
    assert a.dtype == np.float32 and a.ndim == 1 and len(a) == 48000
    assert np.abs(a[4800:-4800]).max() == pytest.approx(0.4, abs=0.01)
    write_wav(tmp_path / "z.wav", np.zeros(1000), 16000)
    with pytest.raises(VlhError, match="silent"):
        load_utterance(tmp_path / "z.wav")


def test_sharpen_cuts_inside_loud_material_with_fades(utterance):
    raw = synthesize(TEXT)
    out, info = sharpen(raw, threshold_db=-20.0)
    s, e, nf = info["source_start"], info["source_end"], info["fade"]
    assert info["start"] == 0 and info["end"] == len(out) == e - s
    assert nf == 96
    # the middle is untouched, the edges are faded copies of the source
    assert np.array_equal(out[nf:-nf], raw[s + nf : e - nf])
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(nf) + 0.5) / nf)
    assert np.allclose(out[:nf], raw[s : s + nf] * ramp, atol=1e-6)
    # the cut is where the voiced-band envelopes (2.5 ms pulse, 10 ms sustained) first both reach -20 dB of their
    # peaks, and the last place they do
    env, sus = synth.envelope(raw, 48000, 2.5), synth.envelope(raw, 48000, 10.0)
    both = (env >= env.max() * 0.1) & (sus >= sus.max() * 0.1)
    assert both[s] and both[e - 1] and not both[:s].any() and not both[e:].any()
    # a stricter threshold cuts further in
    out10, info10 = sharpen(raw, threshold_db=-10.0)
    assert info10["source_start"] >= s and info10["source_end"] <= e


def test_build_conversation_places_everything_where_truth_says(tmp_path):
    x, truth = build_conversation([("hello there", "hi"), (["one", 0.2, "two"], None)], gaps_s=[0.5],
                                  cache_dir=tmp_path)
    assert x.shape[1] == 2 and x.dtype == np.float32
    t0, t1 = truth
    assert t0["agent_start"] - t0["user_end"] == 24000
    assert t1["agent_start"] is None
    for t in truth:
        assert x[t["user_start"] - 1, 0] == 0 and x[t["user_start"] + 200, 0] != 0
        assert x[t["user_end"], 0] == 0 and x[t["user_end"] - 200, 0] != 0
    assert np.abs(x[t0["agent_start"] : t0["agent_end"], 1]).max() == pytest.approx(0.5)
    assert not x[:t0["agent_start"], 1].any()


@pytest.mark.parametrize("engine,voice", [("espeak", None), ("espeak", "en-gb-scotland"), ("flite", "slt"),
                                          ("flite", "awb"), ("festival", "slt"), ("festival", "kal")])
def test_two_fresh_syntheses_are_byte_identical(tmp_path, engine, voice):
    # issue 15 item 4: same text + engine + voice + rate → the same samples; the engine really runs twice
    runs = synth.ENGINE_RUNS
    a = synthesize("Thanks. Could you tell me the opening hours?", voice, 190, tmp_path / "one", engine)
    b = synthesize("Thanks. Could you tell me the opening hours?", voice, 190, tmp_path / "two", engine)
    assert synth.ENGINE_RUNS == runs + 2
    assert a.tobytes() == b.tobytes() and len(a) > 48000
    (f1,), (f2,) = (tmp_path / "one").glob("*.npy"), (tmp_path / "two").glob("*.npy")
    assert f1.read_bytes() == f2.read_bytes()


def test_engines_differ_and_key_the_cache_apart(tmp_path):
    out = {e: synthesize("We open at ten.", None, None, tmp_path, e) for e in synth.ENGINES}
    assert len(list(tmp_path.glob("*.npy"))) == len(synth.ENGINES)
    assert len({a.tobytes() for a in out.values()}) == len(out)  # three engines, three different sounds


def test_unknown_engine_names_the_known_ones(tmp_path):
    with pytest.raises(VlhError, match=r"TTS engine 'mbrola': unknown \(known: espeak, flite, festival\)"):
        synthesize("hello", cache_dir=tmp_path, engine="mbrola")


def test_engine_version_is_in_the_cache_key(tmp_path, monkeypatch):
    synthesize("versioned", cache_dir=tmp_path, engine="flite")
    eng = synth.ENGINES["flite"]
    monkeypatch.setitem(synth.ENGINES, "flite", type(eng)(**{**eng.__dict__, "version": lambda: "flite-9.9"}))
    runs = synth.ENGINE_RUNS
    synthesize("versioned", cache_dir=tmp_path, engine="flite")
    assert synth.ENGINE_RUNS == runs + 1 and len(list(tmp_path.glob("*.npy"))) == 2
