"""harness.report.compare: Mann–Whitney U, exact bootstrap quantile CIs, the stage that moved."""

import numpy as np
import pytest
from scipy import stats

from harness.report.compare import compare_runs, compare_samples
from harness.report.load import load_run
from harness.testing.synthetic import make_run


def test_compare_samples_uses_scipy_and_covers_the_true_shift():
    rng = np.random.default_rng(5)
    a, b = rng.normal(600, 60, 300), rng.normal(680, 60, 300)
    r = compare_samples(a, b)
    assert r["p_value"] == pytest.approx(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    assert r["significant"]
    assert r["d_p50"] == pytest.approx(np.median(b) - np.median(a))
    lo, hi = r["ci_p50"]
    assert lo < 80 < hi and hi - lo < 40
    same = compare_samples(a, rng.normal(600, 60, 300))
    assert not same["significant"] and same["ci_p50"][0] < 0 < same["ci_p50"][1]
    few = compare_samples([1.0], [2.0, 3.0])
    assert few["enough"] is False and few["p_value"] is None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    base = load_run(make_run(d / "a", turns=60, calls=3, recordings="none", seed=21))
    tts = load_run(make_run(d / "b", turns=60, calls=3, recordings="none", seed=22, shift_ms={"tts_ttfb": 150}))
    same = load_run(make_run(d / "c", turns=60, calls=3, recordings="none", seed=23))
    return base, tts, same


def test_plus_150_ms_tts_is_significant_and_named(runs):
    base, tts, _ = runs
    c = compare_runs(base, tts)
    t = c["metrics"]["ttfa_ms"]
    assert t["significant"] and t["p_value"] < 1e-6
    assert t["ci_p50"][0] > 50
    assert c["moved"] == ["tts_ttfb"]
    st = next(r for r in c["stages"] if r["stage"] == "tts_ttfb")
    assert st["ci_p50"][0] < 150 < st["ci_p50"][1] or abs(st["d_p50"] - 150) < 20
    assert "significant." in c["sentence"] and "The stage that moved: TTS (+" in c["sentence"]


def test_no_change_is_not_significant_and_names_nothing(runs):
    base, _, same = runs
    c = compare_runs(base, same)
    assert not c["metrics"]["ttfa_ms"]["significant"]
    assert c["moved"] == []
    assert "not significant. No stage moved significantly." in c["sentence"]
