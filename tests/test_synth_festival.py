import numpy as np
import pytest

from harness.audio.synth import synthesize
from harness.audio.synth_festival import ENGINE
from harness.errors import VlhError

TEXT = "The quick brown fox jumps over the lazy dog"


def _span(a):
    loud = np.flatnonzero(np.abs(a) > 0.01)
    return (loud[-1] - loud[0]) / 48000


def test_voices_found_with_their_short_names():
    v = ENGINE.voices()
    assert v["cmu_us_slt_arctic_hts"] == "slt" and v["kal_diphone"] == "kal"
    assert ENGINE.resolve("slt") == "cmu_us_slt_arctic_hts" and ENGINE.resolve("KAL") == "kal_diphone"


@pytest.mark.parametrize("voice", ["slt", "kal"])  # HTS (hts_engine -r) and diphone (Duration_Stretch)
def test_rate_is_honoured(tmp_path, voice):
    slow = _span(synthesize(TEXT, voice, 120, tmp_path, "festival"))
    fast = _span(synthesize(TEXT, voice, 300, tmp_path, "festival"))
    assert 2.0 < slow / fast < 2.9


def test_text_with_quotes_and_parentheses_is_spoken(tmp_path):
    # the text goes through a file, never into Scheme: quotes cannot break the command
    a = synthesize('He said "hello" (twice); then left.', "kal", None, tmp_path, "festival")
    assert _span(a) > 1.0


def test_bad_voice(tmp_path):
    with pytest.raises(VlhError, match=r"voice 'rab': festival has no such voice \(it has: .*kal"):
        synthesize("hello", "rab", None, tmp_path, "festival")
