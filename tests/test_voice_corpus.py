"""bench/voice_corpus.py: truth placed to the sample, seeds fixed, levels and SNR as stated, scoring counts right.

Real engines (flite, festival, espeak-ng) and the alsa-utils recordings; synthesis is cached under
recordings/cache/voices/.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import voice_corpus as vc  # noqa: E402

SR = 48000


@pytest.mark.parametrize("family", sorted(vc.FAMILIES))
def test_every_family_synthesises_and_truth_is_the_first_and_last_sound(family):
    c = vc.conversation(family, 1, comfort_db=None)  # no comfort noise: digital silence around speech
    assert len(c.user) == len(c.agent) == 6
    for ch, spans in ((0, c.user), (1, c.agent)):
        x = c.audio[:, ch]
        for a, b in spans:
            assert x[a - 1] == 0.0 and x[b] == 0.0
            assert x[a] != 0.0 and x[b - 1] != 0.0  # the faded first and last sample are sound, not silence
            assert np.all(x[b : b + 100] == 0.0)


def test_gaps_levels_and_one_word_utterances():
    c = vc.conversation("flite", 0)
    gaps = [(a - ue) / SR for (_, ue), (a, _) in zip(c.user, c.agent)]
    assert all(0.06 <= g <= 3.0 for g in gaps)
    for ch, spans in ((0, c.user), (1, c.agent)):
        for a, b in spans:
            peak = 20 * np.log10(np.abs(c.audio[a:b, ch]).max())
            assert -33.5 <= peak <= -0.9
    assert {"No.", "Thanks.", "Yes.", "Okay.", "Stop."} <= set(vc.USER_TEXTS)


def test_seeds_are_fixed():
    a = vc.conversation("espeak", 4, noise_kind="babble", snr_db=25.0)
    b = vc.conversation("espeak", 4, noise_kind="babble", snr_db=25.0)
    assert np.array_equal(a.audio, b.audio) and a.user == b.user and a.agent == b.agent


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_snr_is_speech_rms_over_noise_rms(kind):
    clean = vc.conversation("human", 2)
    noisy = vc.conversation("human", 2, noise_kind=kind, snr_db=25.0)
    for ch, spans in ((0, clean.user), (1, clean.agent)):
        sp = np.concatenate([clean.audio[a:b, ch] for a, b in spans]).astype(np.float64)
        n = (noisy.audio[:, ch] - clean.audio[:, ch]).astype(np.float64)
        snr = 10 * np.log10(np.mean(sp ** 2) / np.mean(n ** 2))
        assert abs(snr - 25.0) < 0.05


def test_natural_cut_keeps_a_trailing_fricative_voiced_cut_does_not():
    src = vc.synth("flite", "slt", "Thanks.")
    nat, voi = vc.cut(src, "natural"), vc.cut(src, "voiced")
    assert len(nat) > len(voi) + int(0.05 * SR)  # the /ks/ after the vowel


def test_human_recordings_split_into_words():
    words = vc.pieces(vc.synth("human", "Rear_Center", ""))
    assert len(words) == 2 and all(0.3 < len(w) / SR < 0.8 for w in words)


@dataclass
class R:
    start: int
    end: int


def test_match_counts_missed_merged_split_extra():
    truth = [(100, 200), (300, 400), (500, 600), (700, 800)]
    found = [R(90, 410), R(510, 550), R(560, 600), R(900, 950)]  # merges 0+1, splits 2, misses 3, one extra
    m = vc.match(truth, found)
    assert (m["missed"], m["merged"], m["split"], m["extra"]) == (1, 1, 1, 1) and m["pairs"] == []
    j = vc.match(truth, found, join=True)
    assert [(k, (r.start, r.end)) for k, r in j["pairs"]] == [(2, (510, 600))]


def test_each_edge_is_scored_with_its_utterances_cut():
    """The table's "voiced cut / natural cut" columns: `score` names, for each edge error, the cut of the utterance
    it belongs to, in the order of `errors_ms`; the cuts are those `conversation` made (both kinds occur)."""
    c = vc.conversation("flite", 1)
    assert [len(k) for k in c.info["cuts"]] == [6, 6]
    assert set(c.info["cuts"][0] + c.info["cuts"][1]) == {"voiced", "natural"}
    # regions one sample off each true edge, so each error says which utterance it is
    user = [R(a + 1, b + 1) for a, b in c.user]
    agent = [R(a - 1, b - 1) for a, b in c.agent]
    sc = vc.score(c, user, agent)
    assert len(sc["errors_cut"]) == len(sc["errors_ms"]) == 24
    want = [k for k in c.info["cuts"][0] for _ in (0, 1)] + [k for k in c.info["cuts"][1] for _ in (0, 1)]
    assert list(sc["errors_cut"]) == want
    assert np.allclose(sc["errors_ms"], [1e3 / SR] * 12 + [-1e3 / SR] * 12)
