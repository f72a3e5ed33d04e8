import json

import numpy as np
import pytest

from harness.audio.capture import EAR, MIC, Capture, Timeline, sidecar_path
from harness.audio.wavio import read_wav, write_wav
from harness.errors import VlhError


def test_time_and_sample_mapping_are_inverse():
    c = Capture(np.zeros(48000), np.zeros(48000), t0_mono=1234.5)
    assert c.time_of(0) == 1234.5
    assert c.time_of(24000) == pytest.approx(1235.0)
    for i in (0, 1, 4799, 47999):
        assert c.sample_of(c.time_of(i)) == i
    assert c.duration_s == 1.0 and len(c) == 48000


def test_channels_are_padded_to_one_length():
    c = Capture(np.ones(10), np.ones(25), 0.0)
    assert len(c.mic) == len(c.ear) == 25
    assert c.mic[10:].sum() == 0 and c.channel(MIC) is c.mic and c.channel(EAR) is c.ear


def test_write_read_roundtrip_keeps_t0_and_meta(tmp_path):
    rng = np.random.default_rng(0)
    mic = (rng.standard_normal(4800) * 0.1).astype(np.float32)
    ear = (rng.standard_normal(4800) * 0.1).astype(np.float32)
    c = Capture(mic, ear, t0_mono=98765.4321, meta={"call": 3})
    p = c.write(tmp_path / "rec" / "call-3.wav")
    side = json.loads(sidecar_path(p).read_text())
    assert side["t0_mono"] == 98765.4321 and side["channels"] == ["mic", "ear"]
    r = Capture.read(p)
    assert r.t0_mono == 98765.4321 and r.meta == {"call": 3} and r.sample_rate == 48000
    assert np.abs(r.mic - mic).max() <= 1 / 32768 and np.abs(r.ear - ear).max() <= 1 / 32768
    audio, sr = read_wav(p)
    assert audio.shape == (4800, 2)  # a plain stereo 16-bit WAV: ch0 mic, ch1 ear


def test_write_refuses_to_overwrite(tmp_path):
    c = Capture(np.zeros(480), np.zeros(480), 0.0)
    p = c.write(tmp_path / "c.wav")
    with pytest.raises(VlhError, match="--force"):
        c.write(p)
    p.unlink()
    with pytest.raises(VlhError, match=r"c\.wav\.json.*--force"):  # the sidecar alone blocks it too
        c.write(p)
    c.write(p, force=True)


def test_read_errors(tmp_path):
    write_wav(tmp_path / "m.wav", np.zeros(480), 48000)
    with pytest.raises(VlhError, match="2 channels"):
        Capture.read(tmp_path / "m.wav")
    write_wav(tmp_path / "s.wav", np.zeros((480, 2)), 48000)
    sidecar_path(tmp_path / "s.wav").write_text("{not json")
    with pytest.raises(VlhError, match="sidecar"):
        Capture.read(tmp_path / "s.wav")
    sidecar_path(tmp_path / "s.wav").unlink()
    assert Capture.read(tmp_path / "s.wav").t0_mono == 0.0  # no sidecar: times from the file start


def test_timeline_places_chunks_at_their_instants():
    tl = Timeline(t0_mono=100.0, reserve_s=0.01)  # tiny reserve: growth is exercised
    chunk = np.ones(480, np.float32)
    assert tl.place(MIC, 100.5, chunk) == 24000
    assert tl.place(EAR, 100.25, chunk * 2) == 12000
    tl.place(EAR, 100.25 + 240 / 48000, chunk)  # overlaps by half: the overlap adds
    c = tl.capture(meta={"x": 1})
    assert len(c) == 24480
    assert c.mic[24000:24480].sum() == 480 and c.mic[:24000].sum() == 0
    assert (c.ear[12000:12240] == 2).all() and (c.ear[12240:12480] == 3).all() and (c.ear[12480:12720] == 1).all()
    assert c.t0_mono == 100.0 and c.meta == {"x": 1}


def test_timeline_drops_samples_before_t0():
    tl = Timeline(t0_mono=10.0)
    tl.place(MIC, 10.0 - 100 / 48000, np.arange(200, dtype=np.float32))
    c = tl.capture()
    assert c.mic[0] == 100 and len(c) == 100
