import struct

import numpy as np
import pytest
import scipy.io.wavfile

from harness.audio.wavio import read_wav, write_wav
from harness.errors import VlhError


def _sine(n=4800, ch=1):
    t = np.arange(n) / 48000
    x = np.stack([0.5 * np.sin(2 * np.pi * (300 + 100 * k) * t) for k in range(ch)], axis=1)
    return x[:, 0] if ch == 1 else x


def _wav_bytes(tag, channels, sr, bits, payload, extensible=False):
    block = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, sr, sr * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, sr, sr * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_roundtrip_16bit_mono_and_stereo(tmp_path):
    for ch in (1, 2):
        x = _sine(ch=ch)
        p = write_wav(tmp_path / f"a{ch}.wav", x, 48000)
        y, sr = read_wav(p)
        assert sr == 48000 and y.dtype == np.float32
        assert y.shape == x.shape
        assert np.abs(y - x).max() <= 1 / 32768 + 1e-7


def test_write_clips_instead_of_wrapping(tmp_path):
    p = write_wav(tmp_path / "c.wav", np.array([2.0, -2.0, 0.25]), 16000)
    y, _ = read_wav(p)
    assert y[0] == pytest.approx(32767 / 32768) and y[1] == -1.0 and y[2] == 0.25


def test_write_refuses_to_overwrite_without_force(tmp_path):
    p = write_wav(tmp_path / "x.wav", _sine(), 48000)
    with pytest.raises(VlhError, match=r"x\.wav.*--force"):
        write_wav(p, _sine() * 0.1, 48000)
    write_wav(p, _sine() * 0.1, 48000, force=True)
    assert np.abs(read_wav(p)[0]).max() < 0.06


@pytest.mark.parametrize("dtype", ["int16", "int32", "float32", "float64"])
def test_reads_scipy_written_formats(tmp_path, dtype):
    x = _sine(ch=2)
    if dtype.startswith("int"):
        scale = 2 ** (8 * np.dtype(dtype).itemsize - 1) - 1
        data = np.round(x * scale).astype(dtype)
    else:
        data = x.astype(dtype)
    scipy.io.wavfile.write(tmp_path / "s.wav", 44100, data)
    y, sr = read_wav(tmp_path / "s.wav")
    assert sr == 44100 and y.shape == x.shape
    assert np.abs(y - x).max() < 1e-4


@pytest.mark.parametrize("extensible", [False, True])
def test_reads_24bit(tmp_path, extensible):
    x = _sine(ch=2)
    ints = np.round(x * (2**23 - 1)).astype(np.int32).reshape(-1)
    b = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    (tmp_path / "a.wav").write_bytes(_wav_bytes(1, 2, 48000, 24, b, extensible))
    y, sr = read_wav(tmp_path / "a.wav")
    assert y.shape == x.shape
    assert np.abs(y - x).max() < 1e-6
    assert y.min() < -0.49  # sign extension works


def test_reads_extensible_float(tmp_path):
    x = _sine().astype("<f4")
    (tmp_path / "f.wav").write_bytes(_wav_bytes(3, 1, 16000, 32, x.tobytes(), extensible=True))
    y, sr = read_wav(tmp_path / "f.wav")
    assert sr == 16000 and np.array_equal(y, x)


def test_skips_unknown_chunks_and_odd_padding(tmp_path):
    x = (np.arange(100, dtype="<i2") * 100)
    raw = _wav_bytes(1, 1, 8000, 16, x.tobytes())
    # insert a LIST chunk with an odd length (padded) between fmt and data
    i = raw.index(b"data")
    extra = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"
    raw = raw[:i] + extra + raw[i:]
    raw = raw[:4] + struct.pack("<I", len(raw) - 8) + raw[8:]
    (tmp_path / "l.wav").write_bytes(raw)
    y, _ = read_wav(tmp_path / "l.wav")
    assert np.array_equal(np.round(y * 32768).astype(int), x.astype(int))


def test_data_shorter_than_declared_reads_what_is_there(tmp_path, caplog):
    raw = _wav_bytes(1, 1, 8000, 16, np.ones(1000, "<i2").tobytes())
    (tmp_path / "t.wav").write_bytes(raw[:-500])  # 750 samples left
    y, _ = read_wav(tmp_path / "t.wav")
    assert len(y) == 750
    assert "only" in caplog.text


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"hello, this is a text file and certainly not audio", "not a WAV"),
        (b"RIFF\x24\x00", "truncated WAV header"),
        (None, "truncated WAV header"),  # RIFF/WAVE then a cut fmt chunk
        ("8bit", "8-bit WAV is not supported"),
        ("mulaw", "mu-law WAV is not supported"),
        ("adpcm", "ADPCM WAV is not supported"),
        ("nodata", "no data chunk"),
        ("zeroframes", "no audio samples"),
        ("12bit", "12-bit integer WAV"),
        ("nan", "NaN"),
    ],
)
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, content, match):
    p = tmp_path / "bad.wav"
    if content is None:
        content = _wav_bytes(1, 1, 8000, 16, b"\x00\x00" * 10)[:30]
    elif content == "8bit":
        content = _wav_bytes(1, 1, 8000, 8, b"\x80" * 100)
    elif content == "mulaw":
        content = _wav_bytes(7, 1, 8000, 8, b"\x80" * 100)
    elif content == "adpcm":
        content = _wav_bytes(0x11, 1, 8000, 4, b"\x00" * 100)
    elif content == "nodata":
        content = _wav_bytes(1, 1, 8000, 16, b"")[: -8]
    elif content == "zeroframes":
        content = _wav_bytes(1, 2, 8000, 16, b"\x00\x00")  # one sample of a 2-channel frame
    elif content == "12bit":
        content = _wav_bytes(1, 1, 8000, 16, b"\x00" * 40).replace(struct.pack("<HH", 2, 16), struct.pack("<HH", 2, 12))
    elif content == "nan":
        content = _wav_bytes(3, 1, 8000, 32, np.array([0.0, np.nan], "<f4").tobytes())
    p.write_bytes(content)
    with pytest.raises(VlhError, match=match) as e:
        read_wav(p)
    assert str(p) in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(VlhError, match="no such file"):
        read_wav(tmp_path / "nope.wav")
    with pytest.raises(VlhError, match="is a directory"):
        read_wav(tmp_path)
