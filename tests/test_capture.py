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


# ---- streamed to disk: the same samples, a bounded buffer -----------------------------------------------------
def _reference_and_streamed(seconds: float, seed: int = 1, **kw):
    """Random stamped frames (overlapping, gaps, a late pass into spilled chunks) placed on an all-in-RAM array
    by hand and on a streaming Timeline."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 48000)
    ref = np.zeros((2, n + 2000), np.float32)
    tl = Timeline(t0_mono=50.0, **kw)
    late = []
    for ch in (MIC, EAR):
        pos = 0
        while pos < n:
            size = int(rng.integers(200, 1500))
            frame = rng.standard_normal(size).astype(np.float32)
            if rng.random() < 0.1:
                late.append((ch, pos, frame))  # written after the call has moved on (the chunk is on disk)
            elif rng.random() < 0.9:
                tl.write_at(ch, pos, frame)
            else:
                tl.extend(ch, pos + size)  # silence, as the transports write it
                frame = np.zeros(size, np.float32)
            ref[ch, pos:pos + size] += frame
            pos += size - int(rng.integers(0, 100))  # overlaps add
    for ch, pos, frame in late:
        tl.write_at(ch, pos, frame)
    m = tl.length()
    return tl, ref[:, :m]


def test_streamed_timeline_gives_the_same_samples_as_in_ram(tmp_path):
    tl, ref = _reference_and_streamed(20.0, resident_s=1.0, chunk_s=0.5, spill_dir=tmp_path)
    assert tl.spilled_bytes > 0 and tl.resident_bytes <= 2 * 3 * 24000 * 4  # it did go to disk
    cap = tl.capture({"k": 1})
    assert np.array_equal(cap.mic, ref[0]) and np.array_equal(cap.ear, ref[1])
    assert cap.t0_mono == 50.0 and cap.meta == {"k": 1} and cap.mic.dtype == np.float32
    assert list(tmp_path.iterdir()) == []  # unlinked temporary files: nothing left behind
    # short call: nothing spilled, all in RAM, the same samples
    tl2, ref2 = _reference_and_streamed(3.0, seed=2)
    assert tl2.spilled_bytes == 0
    cap2 = tl2.capture()
    assert np.array_equal(cap2.mic, ref2[0]) and np.array_equal(cap2.ear, ref2[1])


def test_streamed_capture_writes_the_same_wav(tmp_path):
    from harness.audio.wavio import write_wav

    tl, ref = _reference_and_streamed(12.0, resident_s=1.0, chunk_s=1.0, spill_dir=tmp_path)
    cap = tl.capture()
    cap.write(tmp_path / "streamed.wav")
    write_wav(tmp_path / "ram.wav", np.stack([ref[0], ref[1]], axis=1), 48000)
    assert (tmp_path / "streamed.wav").read_bytes() == (tmp_path / "ram.wav").read_bytes()
    back = Capture.read(tmp_path / "streamed.wav")
    assert len(back) == len(cap) and back.t0_mono == cap.t0_mono


def test_resident_buffer_stays_bounded_as_the_call_grows(tmp_path):
    """20 ms frames as a WebRTC call writes them (mic at frame boundaries, ear at jittered playout instants, both
    channels talking half the time): the RAM held by the capture after 10 minutes is what it was after 1."""
    tl = Timeline(t0_mono=0.0, spill_dir=tmp_path)
    rng = np.random.default_rng(3)
    frame = (rng.standard_normal(960) * 0.1).astype(np.float32)
    resident = {}
    for k in range(10 * 60 * 50):
        talking = (k // 250) % 2  # 5 s turns
        if talking:
            tl.write_at(MIC, k * 960, frame)
            tl.extend(EAR, k * 960 + 960)
        else:
            tl.place(EAR, 0.04 + k * 0.02 + rng.uniform(0, 1e-3), frame)
            tl.extend(MIC, k * 960 + 960)
        if k + 1 in (60 * 50, 10 * 60 * 50):
            resident[(k + 1) // 3000] = tl.resident_bytes
    bound = 2 * (tl.resident_chunks + 1) * tl.chunk * 4  # a window of chunks per channel: ≈ 30 MB at 48 kHz
    assert 0 < resident[1] <= bound and 0 < resident[10] <= bound
    assert tl.spilled_bytes >= 2 * 8 * 60 * 48000 * 4 * 0.9  # the other ≈ 9 minutes are on disk
    cap = tl.capture()
    assert len(cap) == 10 * 60 * 48000 and np.array_equal(cap.mic[-960:], frame)  # the last frame, from RAM
