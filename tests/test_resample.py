import numpy as np
import pytest

from harness.audio.resample import resample


@pytest.mark.parametrize("sr_from, sr_to", [(22050, 48000), (44100, 48000), (48000, 16000), (48000, 8000),
                                            (16000, 48000)])
def test_length_and_onset_time_are_kept(sr_from, sr_to):
    # a tone starting at exactly 0.25 s stays at 0.25 s (linear phase, no shift)
    n = sr_from  # 1 s
    x = np.zeros(n, np.float32)
    t0 = int(0.25 * sr_from)
    t = np.arange(n - t0) / sr_from
    x[t0:] = 0.5 * np.sin(2 * np.pi * 200 * t) * np.minimum(1.0, t / 0.002)
    y = resample(x, sr_from, sr_to)
    assert y.dtype == np.float32
    assert len(y) == sr_to
    onset = np.flatnonzero(np.abs(y) > 0.05)[0] / sr_to
    onset_x = np.flatnonzero(np.abs(x) > 0.05)[0] / sr_from
    assert abs(onset - onset_x) < 2 / min(sr_from, sr_to)


def test_amplitude_of_in_band_tone_is_kept():
    x = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(22050) / 22050)).astype(np.float32)
    y = resample(x, 22050, 48000)
    assert np.abs(y[4800:-4800]).max() == pytest.approx(0.5, abs=0.01)


def test_stereo_and_identity():
    x = np.random.default_rng(0).standard_normal((4410, 2)).astype(np.float32)
    assert resample(x, 44100, 44100) is not None and np.array_equal(resample(x, 44100, 44100), x)
    assert resample(x, 44100, 48000).shape == (4800, 2)


def test_rejects_bad_rates():
    with pytest.raises(ValueError):
        resample(np.zeros(10), 0, 48000)
