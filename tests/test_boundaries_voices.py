"""Boundaries on voices vlh was not tuned on (bench/voice_corpus.py): the corpus's worst cases, generated on the fly.

Each case is one failure class of issue 13, with the mechanism that fixed it (docs/boundaries-on-other-voices.md).
Truth is cut from the source signals, never from the detector.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import voice_corpus as vc  # noqa: E402

from harness.audio.boundaries import speech_regions  # noqa: E402

SR = 48000


def _score(c):
    return vc.score(c, speech_regions(c.audio[:, 0], SR), speech_regions(c.audio[:, 1], SR))


def _edge_ms(c, ch, j):
    """(start, end) error in ms of the detected region matching true interval j of channel ch."""
    truth = c.user if ch == 0 else c.agent
    pairs = dict(vc.match(truth, speech_regions(c.audio[:, ch], SR))["pairs"])
    assert j in pairs, f"interval {j} of channel {ch} not found one to one"
    r = pairs[j]
    return (r.start - truth[j][0]) / SR * 1e3, (r.end - truth[j][1]) / SR * 1e3


def test_borderline_last_frame_does_not_drop_the_utterance():
    """flite slt, clean, −23 dBFS: the last loud frame on the 8 kHz copy had no 5 ms window over the threshold
    on the refinement's band, and the whole utterance was dropped."""
    c = vc.conversation("flite", 2)
    s, e = _edge_ms(c, 0, 1)
    assert abs(s) <= 3 and abs(e) <= 3


def test_trailing_ks_of_thanks_is_speech():
    """flite slt "Thanks." (natural cut): the /k/ closure, its release and the /s/ hiss after the vowel; the end
    stopped at the vowel, 185 ms early."""
    c = vc.conversation("flite", 6)
    s, e = _edge_ms(c, 0, 4)
    assert abs(s) <= 3 and abs(e) <= 3


@pytest.mark.parametrize("family,seed,ch,j", [("festival", 2, 0, 1), ("festival", 3, 0, 2), ("flite", 1, 1, 1)])
def test_soft_tail_under_the_edge_level_is_speech(family, seed, ch, j):
    """Breathy/aspirated endings 30–37 dB under the run's peak in the 4 kHz band, 30–50 ms long, flat in spectrum
    (not hiss): the edge stopped at −30 dB, 50.6 / 44.5 / 31.9 ms early. `_soft_edge` follows them out of the
    quiet bed after them."""
    c = vc.conversation(family, seed)
    s, e = _edge_ms(c, ch, j)
    assert abs(s) <= 3 and abs(e) <= 3, (s, e)


def test_quiet_final_fricative_after_a_long_closure_is_part_of_the_utterance():
    """flite kal reply "...thanks." at −24 dBFS: the /k/ closure is 100 ms long and the /ks/ after it peaks 21 dB
    under the reply, below `min_dbfs` (−55 dBFS in the speech band): the run had no loud frame and was dropped,
    cutting the reply 340 ms short (counted as "in parts" before). A quiet VAD-speech run within `min_pause_ms`
    of speech is part of it."""
    c = vc.conversation("flite", 0)
    s, e = _edge_ms(c, 1, 4)
    assert abs(s) <= 3 and abs(e) <= 3, (s, e)


def test_digital_silence_is_not_mirrored_into_a_noise_level():
    """A quiet channel (−28 dBFS) in digital silence: the noise level mirrored the soft edges of speech (the frames
    just over −100 dBFS) into −77 dBFS, 10 dB over which the final /s/ of flite kal's "thanks" (8 kHz voice: no
    hiss above 4 kHz) was cut 45 ms early and festival's 200 ms murmur before a word was left out (+204 ms)."""
    s, e = _edge_ms(vc.conversation("flite", 3), 0, 2)
    assert abs(s) <= 3 and abs(e) <= 3, (s, e)
    s, e = _edge_ms(vc.conversation("festival", 2), 0, 4)
    assert abs(s) <= 3 and abs(e) <= 3, (s, e)


def test_comfort_noise_before_a_reply_is_not_a_soft_onset():
    """flite rms reply after 100 ms of white comfort noise that reaches −40 dB of the reply's peak in 5 ms windows:
    a fixed −40 dB edge level started the reply 15.7 ms early; the soft-onset level stands 10 dB over the bed."""
    c = vc.conversation("flite", 2)
    s, e = _edge_ms(c, 1, 5)
    assert abs(s) <= 3 and abs(e) <= 3, (s, e)


def test_fricative_onset_of_front_and_quiet_word_webrtcvad_rejects():
    """Human recordings: "Front" starts with an /f/ (aliased into the 8 kHz copy, absent under 4 kHz), and a quiet
    "Left" right after digital silence that webrtcvad calls non-speech in every mode."""
    for seed in (1, 11):
        c = vc.conversation("human", seed)
        sc = _score(c)
        assert sc["found"] == 6 and sc["missed"] == 0
        assert np.abs(sc["errors_ms"]).max() <= 3.0


@pytest.mark.parametrize("family", ["flite", "festival", "espeak", "human"])
def test_clean_no_missed_or_merged_and_ttfa_edges_within_3ms(family):
    """Every voice of the family as the agent once, clean audio with comfort noise before each reply."""
    for seed in range(len(vc.FAMILIES[family])):
        sc = _score(vc.conversation(family, seed))
        assert sc["missed"] == 0 and sc["merged"] == 0 and sc["extra"] == 0, (family, seed, sc)
        assert np.abs(sc["key_ms"]).max() <= 3.0, (family, seed, sc["key_ms"])


@pytest.mark.parametrize("kind", ["pink", "babble"])
def test_fluctuating_noise_at_25db_is_not_speech(kind):
    """Babble (and pink noise) at 25 dB SNR: thresholds over the noise's 10th percentile were crossed by the noise
    itself (60 extra regions per 48 turns, replies merged); they now stand on the noise's upper level."""
    for seed in (0, 1, 2):
        sc = _score(vc.conversation("espeak", seed, noise_kind=kind, snr_db=25.0))
        assert sc["extra"] == 0 and sc["merged"] == 0 and sc["missed"] == 0, (kind, seed, sc)
        assert sc["found"] == sc["turns"]


def test_espeak_variants_white_25db_within_5ms():
    for seed in (0, 1, 2):
        sc = _score(vc.conversation("espeak", seed, noise_kind="white", snr_db=25.0))
        assert sc["found"] == sc["turns"]
        assert np.abs(sc["errors_ms"]).max() <= 5.0, (seed, sc["errors_ms"])


def test_final_release_after_a_closure_under_the_noise():
    """Human "... Left" (alsa-utils recording), white noise at 25 dB SNR: the /t/ closure (150 ms) is under the
    noise, its release 19 dB over it; the end stopped before the closure, 172 ms early. A short burst within
    250 ms after the end, alone, in a steady bed, is the release (`_release_edge`)."""
    c = vc.conversation("human", 0, noise_kind="white", snr_db=25.0)
    s, e = _edge_ms(c, 1, 3)
    assert abs(s) <= 5 and abs(e) <= 5, (s, e)


def test_a_pink_noise_swing_is_not_a_release():
    """espeak, pink noise at 35 dB SNR: a 5 ms window of the noise 8 dB over its mean, 40 ms after the user's end,
    was taken for a stop's release at 6 dB over the bed's 90th percentile (end 44 ms late); at 10 dB it is not."""
    s, e = _edge_ms(vc.conversation("espeak", 2, noise_kind="pink", snr_db=35.0), 0, 4)
    assert abs(s) <= 5 and abs(e) <= 5, (s, e)


@pytest.mark.parametrize("family, kind, seed, ch, j, before", [
    # one band over the noise's held level: `_isolated_edge`
    ("festival", "white", 2, 0, 4, "start 205 ms late"),
    ("festival", "pink", 3, 0, 2, "end 306 ms early"),
    ("human", "white", 8, 0, 3, "end 214 ms early"),
    ("flite", "pink", 4, 0, 2, "end 284 ms early"),
    # a 230 ms /s/ ending 4 ms before the reach's end, noise alone after it (past the reach)
    ("flite", "white", 3, 0, 2, "end 346 ms early"),
    # no single band, several at once (pink): `_multiband_edge`; with `_isolated_edge` alone these were `before`
    ("human", "pink", 1, 1, 5, "end 180 ms early"),
    ("human", "pink", 7, 0, 2, "end 180 ms early"),
    ("festival", "pink", 4, 0, 5, "end 88 ms early"),
    ("espeak", "pink", 0, 0, 0, "end 65 ms early"),
])
def test_isolated_sound_beyond_a_dip_under_the_noise(family, kind, seed, ch, j, before):
    """25 dB SNR: a final burst or hiss after a closure under the noise (or an onset before a dip) was left out
    (`before`). It stands above the level the noise alone holds for 10–50 ms (its median + 4 × (p90 − median),
    + 3 dB, measured beyond the reach), so `_isolated_edge` attaches it; or no single band shows it but several
    bands at once do, and `_multiband_edge` (the bands' z-scores against the noise alone, summed) attaches it."""
    s, e = _edge_ms(vc.conversation(family, seed, noise_kind=kind, snr_db=25.0), ch, j)
    assert abs(s) <= 5 and abs(e) <= 5, (before, s, e)


@pytest.mark.parametrize("family, kind, seed, ch, j, side, before", [
    ("flite", "pink", 2, 0, 3, "start", "8.8 ms late"),
    ("flite", "pink", 6, 0, 5, "start", "11.0 ms late"),
    ("human", "pink", 7, 1, 5, "end", "10.3 ms early"),
    ("human", "white", 12, 0, 4, "end", "8.7 ms early"),
])
def test_a_weak_onset_or_tail_at_the_edge_is_attached(family, kind, seed, ch, j, side, before):
    """25 dB: the first or last 8–10 ms of a word, under the refiners' levels but, across the bands, over what the
    noise alone holds (`_multiband_edge`'s thresholds) in the 10 ms frame holding the edge. That frame used to be
    left out as "a continuation" (`before`); it is attached, refined within the frame."""
    s, e = _edge_ms(vc.conversation(family, seed, noise_kind=kind, snr_db=25.0), ch, j)
    assert abs(s if side == "start" else e) <= 5, (side, before, s, e)


@pytest.mark.parametrize("family, kind, snr, seed, ch, j", [
    ("espeak", "babble", 25.0, 2, 1, 4),  # a babble syllable 200 ms after the reply: 226 ms late without the drift test
    ("flite", "babble", 25.0, 3, 1, 0),  # before the reply: 268 ms early without it
    ("human", "pink", 35.0, 14, 0, 0),  # a pink swing 7.3 dB over its median (the low band): 207 ms late at Z = 2.4
])
def test_noise_peaks_are_not_isolated_sounds(family, kind, snr, seed, ch, j):
    """The noise's own peaks near an edge are not attached: babble drifts (its halves' medians differ), so only the
    10 ms hold is tried there; pink noise's low band swings, so the threshold stands 4 × (p90 − median) + 3 dB over
    its median."""
    s, e = _edge_ms(vc.conversation(family, seed, noise_kind=kind, snr_db=snr), ch, j)
    assert abs(s) <= 5 and abs(e) <= 5, (s, e)


@pytest.mark.parametrize("family, seed, ch, j, before", [
    ("flite", 3, 1, 3, "reply start 164 ms early"),
    ("human", 5, 0, 0, "utterance start 462 ms early"),
])
def test_the_babbles_own_hiss_is_not_a_fricative(family, seed, ch, j, before):
    """Babble at 25 dB SNR: `_hiss_edge` followed windows over its band's 10th percentile + 10 dB out from the
    onset and ended on a hissy one — a syllable of the babble (`before`). Babble's 5 ms windows spread 15+ dB, so
    the hiss an edge moves to must now also stand 6 dB over the noise's own hiss (the 90th percentile of the span's
    far half). (The human onset is still 8.4 ms late: its first 8 ms are at the babble's level; its end, a
    release after a closure under the babble, is a separate case.)"""
    s, _ = _edge_ms(vc.conversation(family, seed, noise_kind="babble", snr_db=25.0), ch, j)
    assert abs(s) <= 10, (before, s)


def _false_alarms(thresholds=None):
    """`_multiband_edge`'s false alarms on controls: 400 edges in pink noise alone, and the true edges (outward)
    of real utterances in pink noise at 25 dB where the clean signal is silent over the reach and reference."""
    import multiband_false_alarm as fa
    from harness.audio import boundaries as B

    keep = B.MULTIBAND_THRESHOLDS
    if thresholds is not None:
        B.MULTIBAND_THRESHOLDS = thresholds
    try:
        alone = fa.noise_alone("pink", 400, seed0=300)
        n_fa, n = 0, 0
        for seed in (0, 1):
            c = vc.conversation("flite", seed, noise_kind="pink", snr_db=25.0)
            clean = vc.conversation("flite", seed, comfort_db=None).audio
            for ch, truth in ((0, c.user), (1, c.agent)):
                x, cl = c.audio[:, ch], clean[:, ch]
                for a, b in truth:
                    pk = float(np.sqrt(np.mean(np.square(cl[a:b], dtype=np.float64)))) * 2
                    for start, edge in ((False, b), (True, a)):
                        lo, hi = (edge - fa.SPAN, edge) if start else (edge, edge + fa.SPAN)
                        if lo < 0 or hi > len(x) or np.any(cl[lo:hi] != 0):
                            continue
                        n_fa += B._multiband_edge(x, SR, edge, pk, (pk * 10 ** -4.5) ** 2, 0, len(x),
                                                  start=start) != edge
                        n += 1
    finally:
        B.MULTIBAND_THRESHOLDS = keep
    return alone, (n_fa, n)


def test_noise_alone_is_not_attached_and_the_control_can_fail():
    """Control for the stated false-alarm rate: pink noise alone beyond an edge (400 edges) and after real
    utterances is not attached at the thresholds set (< 0.1 % per edge side: 0 of 4 800 on the calibration
    stretches). The same control with thresholds lowered to about the 90th percentile of the most a 0.35 s reach of
    noise holds (per hold) does attach noise (so it would catch a lowered threshold)."""
    (fa, n), (fa_u, n_u) = _false_alarms()
    assert n == 400 and n_u >= 10
    assert fa <= 1 and fa_u == 0, (fa, fa_u, n_u)
    (fa_lo, _), _ = _false_alarms((11.2, 9.0, 7.5, 6.3))
    assert fa_lo >= 3, fa_lo


@pytest.mark.parametrize("family, kind, seed, ch, j, side, before", [
    ("human", "babble", 8, 1, 3, "end", "172 ms late without the spread test"),
    ("human", "pink", 10, 1, 3, "start", "23 ms early when the frame holding the edge could be the sound"),
])
def test_multiband_does_not_reach_into_noise(family, kind, seed, ch, j, side, before):
    """25 dB: a babble reference whose bands looked independent and steady (correlation 0.03, drift 0.64 σ) but
    whose 4 kHz-band level swings like babble's (p90 − median 3.6 dB) is refused; a detection in the frame that
    holds the edge itself, refined as an isolated sound, put a reply's start 23 ms into the pink noise and comfort
    noise before it (the refinement's change point followed the noise): it is now refined within that frame.
    Neither edge may move into the noise (`before`)."""
    s, e = _edge_ms(vc.conversation(family, seed, noise_kind=kind, snr_db=25.0), ch, j)
    if side == "end":
        assert e <= 0.0, (before, e)
    else:
        assert s >= -1.0, (before, s)


def test_isolated_edge_attaches_nothing_in_noise_alone():
    """`_isolated_edge`'s own control: "edges" at random positions in white and pink noise alone (the corpus's
    generators, seeds not used elsewhere), a speech peak 25 dB over the noise so the level floor is no obstacle.
    Any moved edge is noise attached as speech (0 of 3 200 in bench runs at seeds 100–107, white, pink, babble)."""
    from harness.audio import boundaries as B

    span = int(SR * (B.ISOLATED_REACH_S + B.ISOLATED_REF_S))
    moved = []
    for kind in ("white", "pink"):
        nz = vc.noise(kind, SR * 30, 400) * np.float32(0.01)
        pk = 0.01 * 10 ** (25 / 20) * 2
        for pos in np.random.default_rng(400).integers(span + 1, len(nz) - span - 1, 150):
            start = bool(pos % 2)
            e = B._isolated_edge(nz, SR, int(pos), pk, (pk * 10 ** -4.5) ** 2, 0, len(nz), start=start)
            if e != pos:
                moved.append((kind, int(pos), start, (e - int(pos)) / SR * 1e3))
    assert moved == []
