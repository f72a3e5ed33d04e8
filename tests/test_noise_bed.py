"""A scenario's `noise:` is the call's background (harness/audio/noise.py): continuous from the start of the call,
at each turn's SNR below its speech, and never part of the utterance itself — so the user's speech boundaries are
the utterance's own edges, and the room is noisy between turns too."""

from __future__ import annotations

import numpy as np
import pytest

from harness.audio.noise import NoiseBed, colored, noise_rms
from harness.errors import VlhError
from harness.audio.synth import synthesize
from harness.measure.runner import RunConfig, attach_noise, build_utterances, crisp
from harness.suite.scenario import load_scenario


def db(x) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def test_colored_noise_is_unit_rms_and_pink_falls_3_db_per_octave():
    w, p = colored("white", 480000, 1), colored("pink", 480000, 1)
    assert db(w) == pytest.approx(0, abs=0.01) and db(p) == pytest.approx(0, abs=0.01)
    spec = np.abs(np.fft.rfft(p)) ** 2
    f = np.fft.rfftfreq(len(p), 1 / 48000)
    band = lambda lo: spec[(f >= lo) & (f < 2 * lo)].sum()  # noqa: E731
    assert 10 * np.log10(band(1000) / band(500)) == pytest.approx(0, abs=0.5)  # equal power per octave
    assert spec[f < 19].sum() < 1e-9 * spec.sum()  # no sub-audio rumble inflating the RMS
    assert np.array_equal(colored("pink", 1000, 7), colored("pink", 1000, 7))


def test_bed_levels_switch_at_the_given_samples():
    bed = NoiseBed()
    assert not bed(0, 960).any()  # no level yet: quiet
    bed.set(0, "pink", 0.01)
    bed.set(48000, None, 0.0)  # a turn without noise: quiet from its first sample
    bed.set(96000, "white", 0.001)
    x = np.concatenate([bed(a, 960) for a in range(0, 144000, 960)])
    assert db(x[:48000]) == pytest.approx(-40, abs=0.5)
    assert not x[48000:96000].any()
    assert db(x[96000:]) == pytest.approx(-60, abs=0.5)
    assert np.array_equal(bed(47500, 960)[:500], x[47500:48000])  # a frame across a switch


def test_noisy_scenario_turns_are_pure_speech_and_the_bed_is_at_the_snr(tmp_path):
    f = tmp_path / "n.yaml"
    f.write_text('name: n\nturns:\n  - say: "Where is the station?"\n    level_dbfs: -26\n'
                 '    noise: {type: pink, snr_db: 20}\n  - say: "Thanks."\n')
    utts, _ = build_utterances(RunConfig(scenario=load_scenario(f)))
    noisy, clean = utts
    assert db(noisy.samples) == pytest.approx(-26, abs=0.01)
    assert len(noisy.samples) == len(crisp(synthesize("Where is the station?")))  # the speech only: no noise pad
    assert noisy.noise_kind == "pink" and 20 * np.log10(noisy.noise_rms) == pytest.approx(-46, abs=0.01)
    assert clean.noise_kind is None and clean.noise_rms == 0

    class Mic:
        background = None
        t_start = 0.0

    class Call:
        mic = Mic()

    call = Call()
    bed = attach_noise(call, utts)
    assert call.mic.background is bed
    assert db(bed(0, 48000)) == pytest.approx(-46, abs=0.5)  # before the first turn: the room is already noisy
    assert noise_rms(noisy.samples, 20) == pytest.approx(noisy.noise_rms)
    assert attach_noise(Call(), [clean]) is None

    class NoMic:
        pass

    with pytest.raises(VlhError, match="noise"):
        attach_noise(NoMic(), utts)
