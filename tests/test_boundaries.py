"""Boundary accuracy against truth known to the sample: synthetic bursts (≤ 1 ms) and real espeak speech (≤ 3 ms)."""

import numpy as np
import pytest
from conftest import faded_burst

from harness.audio.boundaries import Region, first_speech_after, noise_floor, speech_regions

SR = 48000

# phrases without internal sentence breaks (a comma pause next to an unvoiced consonant can exceed 300 ms in noise)
USER = ["I would like to book a table for two", "Tomorrow evening around seven", "Can you also tell me where to park",
        "Yes thank you very much", "Let me check the calendar", "Perfect see you then"]
AGENT = ["Sure for what day", "Seven works for us", "There is a car park behind the building", "You are welcome",
         "Okay that sounds fine", "Goodbye"]
GAPS = [0.09, 0.15, 0.4, 1.0, 2.0, 3.0]


def _bursts(sr, kind, freq, noise_dbfs=None, seed=0):
    x = np.zeros(int(4.5 * sr), np.float32)
    truth = []
    for k, (start, dur) in enumerate([(0.5, 0.4), (1.41, 0.25), (2.2, 0.5), (3.6, 0.12)]):
        a, n = int(round(start * sr)) + 7 * k, int(round(dur * sr)) + 3 * k  # not on frame boundaries
        x[a : a + n] += faded_burst(n, kind, sr, freq, seed=k)
        truth.append((a, a + n))
    if noise_dbfs is not None:
        x += (np.random.default_rng(seed).standard_normal(len(x)) * 10 ** (noise_dbfs / 20)).astype(np.float32)
    return x, truth


@pytest.mark.parametrize("sr", [48000, 16000, 44100])
@pytest.mark.parametrize("kind, freq", [("harmonic", 110.0), ("harmonic", 220.0), ("tone", 440.0), ("noise", 0.0)])
@pytest.mark.parametrize("noise_dbfs", [None, -60.0])
def test_synthetic_bursts_within_1ms(sr, kind, freq, noise_dbfs):
    x, truth = _bursts(sr, kind, freq, noise_dbfs)
    regions = speech_regions(x, sr)
    assert len(regions) == len(truth)
    for r, (a, b) in zip(regions, truth):
        assert abs(r.start - a) <= sr / 1000, (r, a)
        assert abs(r.end - b) <= sr / 1000, (r, b)


def test_region_times_and_fields():
    r = Region(48000, 72000, 48000)
    assert (r.start_s, r.end_s, r.duration_s) == (1.0, 1.5, 0.5)


def _errors_ms(regions, truth_pairs):
    assert len(regions) == len(truth_pairs), ([(r.start_s, r.end_s) for r in regions],
                                              [(a / SR, b / SR) for a, b in truth_pairs])
    return [((r.start - a) / SR * 1e3, (r.end - b) / SR * 1e3) for r, (a, b) in zip(regions, truth_pairs)]


@pytest.mark.parametrize("noise_db, threshold_db", [(None, -20.0), (40.0, -20.0), (40.0, -10.0), (25.0, -10.0)])
def test_espeak_boundaries_within_3ms(conversation, noise_db, threshold_db):
    """Stereo conversation: espeak speech cut inside voiced regions at known instants, white noise `noise_db`
    under the speech peak, 80 ms of comfort noise 45 dB under the peak before each reply."""
    x, truth = conversation(list(zip(USER, AGENT)), gaps_s=GAPS, noise_db=noise_db, comfort_noise_db=45.0,
                            threshold_db=threshold_db, seed=3)
    user = speech_regions(x[:, 0], SR)
    agent = speech_regions(x[:, 1], SR)
    errs = _errors_ms(user, [(t["user_start"], t["user_end"]) for t in truth])
    errs += _errors_ms(agent, [(t["agent_start"], t["agent_end"]) for t in truth])
    worst = max(abs(e) for pair in errs for e in pair)
    assert worst <= 3.0, errs


def test_cut_below_the_noise_is_not_claimed_exact(conversation):
    """The test above can fail: cut at -20 dB of the envelope, under white noise 15 dB under the peak, onsets are
    found up to 27 ms late (the detector finds the speech only where it rises above the noise). At 18 dB the
    first 10 ms of three onsets stand −1 … +2 dB over the noise's mean in the 4 kHz band (measured on the speech
    and the noise apart) and were found more than 3 ms late; judged across bands (`_multiband_edge`: white noise
    is weak in the low bands, where a voiced onset is not) they are now found within 1.6 ms, so this control
    moved to 15 dB."""
    x, truth = conversation(list(zip(USER, AGENT)), gaps_s=GAPS, noise_db=15.0, threshold_db=-20.0, seed=3)
    user = speech_regions(x[:, 0], SR)
    starts = [min(abs(r.start - t["user_start"]) for r in user) / SR * 1e3 for t in truth]
    assert max(starts) > 3.0


def test_onset_a_little_over_steady_noise_is_found(conversation):
    """At 25 dB (the same cut) those onsets stand a few dB over the white noise: more than the noise's own 5 ms
    windows ever hold for 10 ms (`_isolated_edge` judges by the noise's distribution, not its mean), so they are
    found to 3 ms (before it, one was 47 ms late)."""
    x, truth = conversation(list(zip(USER, AGENT)), gaps_s=GAPS, noise_db=25.0, threshold_db=-20.0, seed=3)
    user = speech_regions(x[:, 0], SR)
    starts = [min(abs(r.start - t["user_start"]) for r in user) / SR * 1e3 for t in truth]
    assert max(starts) <= 3.0, starts


@pytest.mark.parametrize("noise_db", [None, 25.0])
def test_pauses_up_to_250ms_do_not_split_but_longer_ones_do(conversation, noise_db):
    ex = [(["I would like to book", 0.1, "a table for two"], None),
          (["Tomorrow evening", 0.25, "around seven"], None),
          (["Can you also tell me", 0.2, "where to park", 0.25, "please"], None),
          (["Yes thank you", 0.45, "very much"], None)]
    x, truth = conversation(ex, noise_db=noise_db, threshold_db=-10.0, seed=1)
    user = speech_regions(x[:, 0], SR, min_pause_ms=300)
    # three whole utterances, then the fourth in two pieces
    assert len(user) == 5, [(r.start_s, r.end_s) for r in user]
    for r, t in zip(user[:3], truth[:3]):
        assert abs(r.start - t["user_start"]) <= 144 and abs(r.end - t["user_end"]) <= 144
    assert abs(user[3].start - truth[3]["user_start"]) <= 144
    assert abs(user[4].end - truth[3]["user_end"]) <= 144
    # with a longer allowed pause the fourth is whole too
    assert len(speech_regions(x[:, 0], SR, min_pause_ms=500)) == 4


def test_noise_hiss_comfort_noise_and_silence_are_not_speech():
    rng = np.random.default_rng(5)
    n = 6 * SR
    assert speech_regions(np.zeros(n, np.float32), SR) == []
    hiss = (rng.standard_normal(n) * 0.02).astype(np.float32)  # -34 dBFS white noise, steady
    assert speech_regions(hiss, SR) == []
    cn = np.zeros(n, np.float32)
    for start, dur in [(0.3, 0.08), (1.0, 0.5), (2.0, 3.0)]:
        a = int(start * SR)
        cn[a : a + int(dur * SR)] = rng.standard_normal(int(dur * SR)) * 10 ** (-50 / 20)
    assert speech_regions(cn, SR) == []


def test_comfort_noise_before_speech_is_not_its_start(utterance):
    u = utterance("Sure for what day")
    x = np.zeros(3 * SR, np.float32)
    a = SR
    x[a : a + len(u)] = u
    rng = np.random.default_rng(2)
    x[a - int(0.08 * SR) : a] += rng.standard_normal(int(0.08 * SR)) * 0.5 * 10 ** (-40 / 20)
    (r,) = speech_regions(x, SR)
    assert abs(r.start - a) <= 144 and abs(r.end - (a + len(u))) <= 144


def test_min_speech_drops_short_bursts():
    x = np.zeros(2 * SR, np.float32)
    x[SR : SR + int(0.05 * SR)] = faded_burst(int(0.05 * SR), "harmonic", SR, 150.0)
    x[int(0.3 * SR) : int(0.6 * SR)] = faded_burst(int(0.3 * SR), "harmonic", SR, 150.0)
    assert len(speech_regions(x, SR)) == 1
    assert len(speech_regions(x, SR, min_speech_ms=30)) == 2


def test_unrefined_regions_are_frame_edges():
    x, truth = _bursts(SR, "harmonic", 150.0)
    rough = speech_regions(x, SR, refine=False)
    assert len(rough) == len(truth)
    for r in rough:
        assert r.start % 480 == 0 and r.end % 480 == 0
    fine = speech_regions(x, SR)
    assert sum(abs(f.start - a) for f, (a, _) in zip(fine, truth)) < sum(abs(r.start - a) for r, (a, _) in
                                                                          zip(rough, truth))


def test_noise_floor_is_the_speech_band_level_of_the_noise():
    sigma = 0.01
    x = (np.random.default_rng(0).standard_normal(10 * SR) * sigma).astype(np.float32)
    # block averaging to 8 kHz keeps 1/6 of white noise power; the floor is the 10th percentile of 10 ms frames
    # (80 samples at 8 kHz: RMS spread ±8 %), so it sits about 10 % under the mean level
    assert 0.85 * sigma / np.sqrt(6) < noise_floor(x, SR) < sigma / np.sqrt(6)
    assert noise_floor(np.zeros(SR, np.float32), SR) == pytest.approx(1e-5)


def test_first_speech_after(utterance):
    u = utterance("You are welcome")
    x = np.zeros(8 * SR, np.float32)
    starts = [int(0.5 * SR), int(3.0 * SR), int(5.5 * SR)]
    for s in starts:
        x[s : s + len(u)] = u
    r = first_speech_after(x, SR, int(2.0 * SR))
    assert r is not None and abs(r.start - starts[1]) <= 144
    # a region already under way at start_index does not count
    r = first_speech_after(x, SR, starts[1] + 100)
    assert r is not None and abs(r.start - starts[2]) <= 144
    assert first_speech_after(x, SR, starts[2] + 100) is None
    # same answer whether the floor is given or measured
    r2 = first_speech_after(x, SR, int(2.0 * SR), floor=noise_floor(x, SR))
    assert r2 == first_speech_after(x, SR, int(2.0 * SR))


def test_bad_arguments():
    with pytest.raises(ValueError):
        speech_regions(np.zeros((100, 2), np.float32), SR)
    with pytest.raises(ValueError):
        speech_regions(faded_burst(SR, "harmonic", SR, 150.0), SR, vad_mode=7)
    assert speech_regions(np.zeros(10, np.float32), SR) == []


# ---------------------------------------------------------------------------------------------------- fast helpers
# the edge searches use their own percentile, median and window RMS for speed: they must be the same numbers as
# numpy's (the boundaries may not move by a sample), including ties, tiny arrays, infinities and NaN


def _stat_arrays():
    rng = np.random.default_rng(7)
    for t in range(3000):
        n = int(rng.integers(1, 600))
        v = rng.standard_normal(n) ** 2 * 10 ** rng.uniform(-8, 0)
        if t % 4 == 0:
            v = np.round(v, 1)  # ties
        if t % 53 == 0:
            v[rng.integers(n)] = np.inf
        if t % 59 == 0:
            v[rng.integers(n)] = np.nan
        yield v


def _same(a, b):
    return a == b or (np.isnan(a) and np.isnan(b))


def test_percentile_is_numpys():
    from harness.audio.boundaries import _percentile
    bad = [(len(v), q) for v in _stat_arrays() for q in (10, 50, 90)
           if not _same(float(np.percentile(v, q)), _percentile(v, q))]
    assert bad == []


def test_median_is_numpys():
    from harness.audio.boundaries import _median
    bad = [len(v) for v in _stat_arrays() if not _same(float(np.median(v)), _median(v))]
    assert bad == []


def test_median_p90_is_numpys():
    from harness.audio.boundaries import _median_p90
    bad = [len(v) for v in _stat_arrays() if not all(
        _same(a, b) for a, b in zip(_median_p90(v), (float(np.median(v)), float(np.percentile(v, 90)))))]
    assert bad == []


def test_held_min_is_the_minimum_filter():
    """`_HeldMin(r).min(k)` gives min(r[i : i + k]) exactly as scipy's minimum filter (ties, NaN, every k)."""
    from scipy.ndimage import minimum_filter1d

    from harness.audio.boundaries import _HeldMin
    rng = np.random.default_rng(5)
    bad = []
    for t in range(400):
        n = int(rng.integers(1, 300))
        r = np.round(rng.random(n) ** 3, 2 if t % 3 == 0 else 12)  # rounded: many ties
        if t % 37 == 0:
            r[rng.integers(n)] = np.nan
        held = _HeldMin(r)
        for k in rng.permutation(np.arange(1, min(n, 64) + 1)):  # any order of k
            want = minimum_filter1d(r, int(k), origin=-(int(k) // 2))[: n - k + 1]
            got = held.min(int(k))
            if not np.array_equal(got, want, equal_nan=True):
                bad.append((n, int(k)))
    assert bad == []


def test_win_rms_and_band_are_the_plain_computation():
    from harness.audio.boundaries import _band, _highpass, _lowpass, _win_rms
    rng = np.random.default_rng(3)
    for t in range(200):
        y = rng.standard_normal(int(rng.integers(300, 4000))).astype(np.float32 if t % 2 else np.float64)
        w = int(rng.integers(8, 300))
        c = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
        assert np.array_equal(_win_rms(y, w), np.sqrt(np.maximum(c[w:] - c[:-w], 0.0) / w))
    x = rng.standard_normal(20000).astype(np.float32)
    for t in range(200):
        a = int(rng.integers(0, 19000))
        b = int(rng.integers(a + 1, 20001))
        h = _highpass(SR) if t % 2 else _lowpass(SR)
        lo, hi = max(0, a - len(h) // 2), min(len(x), b + len(h) // 2)
        plain = np.convolve(x[lo:hi].astype(np.float64) - 0.01, h, mode="same")[a - lo : a - lo + (b - a)]
        assert np.array_equal(_band(x, SR, a, b, 0.01, hiss=bool(t % 2)), plain)


@pytest.mark.parametrize("sr", [48000, 44100])
def test_band_rms_reach_is_the_first_windows_of_band_rms_out(conversation, sr):
    """`_isolated_edge` tests a band's reach before filtering its reference: the reach's windows must be the very
    numbers `_band_rms_out` gives there, from what `_hiss_edge`/`_release_edge` kept or from the reach alone
    (espeak speech in white noise 25 dB under its peak; both bands, both sides, many edges)."""
    from harness.audio.boundaries import (HISS_FLOOR_S, ISOLATED_REACH_S, ISOLATED_REF_S, _band_rms,
                                          _band_rms_out, _band_rms_reach)
    from harness.audio.resample import resample
    x, _ = conversation(list(zip(USER, AGENT))[:3], gaps_s=GAPS[:3], noise_db=25.0, comfort_noise_db=45.0, seed=3)
    x = np.ascontiguousarray(x[:, 0]) if sr == SR else resample(np.ascontiguousarray(x[:, 0]), SR, sr)
    w = int(round(sr * 0.005))
    st = w // 4
    reach, full, span = (int(round(sr * s)) for s in (ISOLATED_REACH_S, ISOLATED_REACH_S + ISOLATED_REF_S,
                                                      HISS_FLOOR_S))
    n_win = (reach - w) // st + 1
    rng = np.random.default_rng(1)
    for t in range(120):
        edge = int(rng.integers(full + 100, len(x) - full - 100))
        start, hiss, kept = bool(t % 2), bool(t // 2 % 2), bool(t // 4 % 2)
        a, b = (edge - full, edge) if start else (edge, edge + full)
        memo: dict = {}
        if kept:  # what `_hiss_edge` / `_release_edge` keep beside the edge
            _band_rms(x, sr, *((edge - span, edge) if start else (edge, edge + span)), 0.001, hiss, w, memo)
        want = _band_rms_out(x, sr, a, b, 0.001, hiss, w, st, memo, start=start)[:n_win]
        got = _band_rms_reach(x, sr, a, b, 0.001, hiss, w, st, n_win, memo, start=start)
        assert np.array_equal(got, want), (t, edge, start, hiss, kept)


def test_skipping_quiet_reaches_moves_no_edge(conversation, monkeypatch):
    """The regions are the same, to the sample, when `_isolated_edge` filters every band's reference instead of
    skipping the bands whose reach holds nothing at the level floor (white and quieter noise, comfort noise)."""
    import harness.audio.boundaries as bd
    for noise_db in (40.0, 25.0, 18.0):
        x, _ = conversation(list(zip(USER, AGENT)), gaps_s=GAPS, noise_db=noise_db, comfort_noise_db=45.0, seed=5)
        fast = [[(r.start, r.end) for r in speech_regions(x[:, ch], SR)] for ch in (0, 1)]
        with monkeypatch.context() as m:
            m.setattr(bd, "_isolated_quiet", lambda *a: False)
            full = [[(r.start, r.end) for r in speech_regions(x[:, ch], SR)] for ch in (0, 1)]
        assert fast == full
