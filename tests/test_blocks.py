"""Block-wise speech regions (harness/audio/blocks.py) equal whole-file ones, on a real espeak conversation whose
turns straddle the block edges (blocks of a few seconds here; two minutes in `vlh analyze`)."""

import json

import numpy as np
import pytest

from harness.audio.blocks import block_speech_regions, cut_points, frame_energy, resampled_reader
from harness.audio.boundaries import FRAME_S, frame_rms, speech_regions, to_vad_rate
from harness.audio.resample import resample
from harness.audio.turns import find_turns, pair_turns
from harness.audio.wavio import write_wav
from harness.cli import main

SR = 48000
EXCHANGES = [("I would like to book a table for two", "Sure, for what day"),
             ("Tomorrow evening around seven", ["Seven works", 0.4, "for us"]),
             ("Can you also tell me where to park", "There is a car park behind the building"),
             ("Let me check the calendar", None),
             ("Yes thank you very much", "You are welcome")]
GAPS = [0.3, 2.2, 0.8, 1.9]


@pytest.fixture(scope="module")
def conv():
    from harness.audio.synth import build_conversation

    x, truth = build_conversation(EXCHANGES, gaps_s=GAPS, between_s=1.7, noise_db=45.0, comfort_noise_db=50.0,
                                  seed=3)
    x[:, 1] += 0.002  # a DC offset on the ear: the blocks must use the whole channel's
    return x, truth


def _pairs(regions):
    return [(r.start, r.end) for r in regions]


@pytest.mark.parametrize("sr", [48000, 44100, 16000])
@pytest.mark.parametrize("block_s", [3.0, 4.5, 7.0])
def test_block_regions_equal_whole_file(conv, block_s, sr):
    x, truth = conv
    x = resample(x, SR, sr)  # 44.1 kHz: the 8 kHz copy is a polyphase resampling, piece by piece
    for ch in (0, 1):
        c = np.ascontiguousarray(x[:, ch])
        whole = speech_regions(c, sr)
        blocks = block_speech_regions(lambda a, b: c[a:b], len(c), sr, block_s=block_s)
        assert len(whole) >= 4
        assert _pairs(blocks) == _pairs(whole), f"channel {ch}, blocks of {block_s} s"


def test_turns_cross_block_edges(conv):
    x, truth = conv
    mic, ear = np.ascontiguousarray(x[:, 0]), np.ascontiguousarray(x[:, 1])
    whole = find_turns(mic, ear, SR)
    user = block_speech_regions(lambda a, b: mic[a:b], len(mic), SR, block_s=3.0)
    agent = block_speech_regions(lambda a, b: ear[a:b], len(ear), SR, block_s=3.0)
    assert pair_turns(user, agent, SR, len(x)) == whole
    # where the ear channel was cut: at least one cut falls inside a turn, between the user's start and the reply
    rms, _ = frame_energy(lambda a, b: ear[a:b], len(ear), SR)
    from harness.audio.boundaries import noise_floor, noise_level
    quiet = rms < noise_level(rms, noise_floor(ear, SR)) * 10 ** (3 / 20)
    cuts = [c * 480 for c in cut_points(quiet, int(3.0 / FRAME_S), int(1.5 / FRAME_S))]
    inside = [c for c in cuts for t in truth if t["agent_start"] and t["user_start"] < c < t["agent_start"]]
    assert len(cuts) >= 3 and inside, (cuts, truth)


@pytest.mark.parametrize("sr", [48000, 44100, 22050, 16000, 8000])
def test_frame_energy_and_dc_equal_whole_channel(conv, sr):
    x, _ = conv
    c = np.ascontiguousarray(resample(x[:, 1], SR, sr)[:-123])  # a partial last frame
    y8 = to_vad_rate(c, sr)
    rms, dc = frame_energy(lambda a, b: c[a:b], len(c), sr, chunk_s=1.0)
    assert np.allclose(rms, frame_rms(y8), rtol=1e-6, atol=0)  # BLAS may sum a piece in another order
    assert dc == pytest.approx(float(np.mean(y8, dtype=np.float64)), rel=1e-6)


def test_no_quiet_stretch_grows_the_block():
    quiet = np.zeros(1000, bool)
    quiet[700:900] = True  # the only quiet stretch, long after the first nominal block
    assert cut_points(quiet, 100, 150) == [800]


def test_analyze_command_equals_whole_file(conv, tmp_path, capsys):
    x, _ = conv
    path = write_wav(tmp_path / "rec.wav", x, SR)
    from harness.audio.wavio import read_wav

    y, _ = read_wav(path)
    whole = [t.to_dict() for t in find_turns(np.ascontiguousarray(y[:, 0]), np.ascontiguousarray(y[:, 1]), SR)]
    assert main(["analyze", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["turns"] == whole


@pytest.mark.parametrize("rates", [(16000, 48000), (44100, 48000), (48000, 44100), (96000, 8000)])
def test_resampled_pieces_equal_the_whole_channel_resampled(conv, rates):
    x, _ = conv
    src = resample(x[: 4 * SR + 77, 1], SR, rates[0])
    whole = resample(src, *rates)
    read, n = resampled_reader(lambda a, b: src[a:b], len(src), *rates)
    assert n == len(whole)
    pieces = np.concatenate([read(a, min(a + 12345, n)) for a in range(0, n, 12345)])
    assert np.array_equal(pieces, whole)
    assert read(n - 5, n + 5)[5:].tolist() == [0.0] * 5  # past the end: silence


def test_analyze_two_files_at_two_rates_equals_whole_file(conv, tmp_path, capsys):
    x, _ = conv
    from harness.audio.wavio import read_wav

    mic = write_wav(tmp_path / "mic.wav", x[:, 0], SR)
    ear = write_wav(tmp_path / "ear.wav", resample(x[:, 1], SR, 16000), 16000)
    m, _ = read_wav(mic)
    e, _ = read_wav(ear)
    e = resample(e, 16000, SR)
    n = max(len(m), len(e))
    whole = [t.to_dict() for t in find_turns(np.pad(m, (0, n - len(m))), np.pad(e, (0, n - len(e))), SR)]
    assert main(["analyze", "--mic", str(mic), "--ear", str(ear), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["turns"] == whole
