import numpy as np
import pytest

from harness.audio.synth import synthesize
from harness.audio.synth_flite import ENGINE
from harness.errors import VlhError

TEXT = "The quick brown fox jumps over the lazy dog"


def _span(a):
    loud = np.flatnonzero(np.abs(a) > 0.01)
    return (loud[-1] - loud[0]) / 48000


def test_voices_listed_from_the_cli():
    assert {"kal", "awb", "rms", "slt"} <= set(ENGINE.voices())
    assert ENGINE.version().startswith("flite-")


def test_rate_stretches_duration(tmp_path):
    slow = _span(synthesize(TEXT, "slt", 120, tmp_path, "flite"))
    fast = _span(synthesize(TEXT, "slt", 300, tmp_path, "flite"))
    assert 2.0 < slow / fast < 2.9  # duration_stretch = 175 / rate: 2.5× in theory


def test_voice_is_honoured(tmp_path):
    a = synthesize(TEXT, "slt", None, tmp_path, "flite")
    b = synthesize(TEXT, "rms", None, tmp_path, "flite")
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_bad_voice_lists_the_real_ones(tmp_path):
    with pytest.raises(VlhError, match=r"voice 'nobody': flite has no such voice \(it has: .*slt"):
        synthesize("hello", "nobody", None, tmp_path, "flite")
