"""`repetitions` means the same for `vlh run --scenario FILE` and `vlh suite`: the list of turns played N times in
one call (Scenario.played_turns, the one place both take their turns from); `--turns N` plays exactly N."""

from __future__ import annotations


import pytest

import harness.measure.runner as run_mod
from harness.cli import main as cli_main
from harness.measure.runner import RunConfig, build_utterances
from harness.suite.scenario import load_scenario
from harness.suite.nightly import RunRequest, default_runner

SCENARIO = """\
name: reps
repetitions: 3
turns:
  - say: "One."
    pause_after_ms: 100
  - say: "Two."
    barge_in_after_ms: 300
    pause_after_ms: 200
"""


@pytest.fixture
def scenario(tmp_path):
    f = tmp_path / "reps.yaml"
    f.write_text(SCENARIO)
    return load_scenario(f)


def test_played_turns(scenario):
    played = scenario.played_turns()
    assert [t.say for t in played] == ["One.", "Two."] * 3
    assert [t.barge_in_after_ms for t in played] == [None, 300] * 3
    assert [t.say for t in scenario.played_turns(5)] == ["One.", "Two.", "One.", "Two.", "One."]
    assert [t.say for t in scenario.played_turns(1)] == ["One."]


class Captured(BaseException):
    """Stops `vlh run` where it would start measuring; not an Exception, so the CLI's crash handler (which turns a
    vlh bug into one line and a log file) lets it through to the test."""


def _capture(monkeypatch) -> list[RunConfig]:
    seen: list[RunConfig] = []

    def fake(cfg):
        seen.append(cfg)
        raise Captured

    monkeypatch.setattr(run_mod, "run_measurement", fake)
    return seen


def _said(cfg: RunConfig) -> list[tuple[str, float | None, float]]:
    utts, name = build_utterances(cfg)
    assert name == "reps"
    return [(u.text, u.barge_in_after_ms, u.pause_after_s) for u in utts]


def test_vlh_run_scenario_and_the_suite_play_the_same_turns(scenario, tmp_path, monkeypatch):
    seen = _capture(monkeypatch)
    with pytest.raises(Captured):
        cli_main(["run", "--scenario", str(scenario.source), "--out", str(tmp_path / "r"), "--no-report"])
    with pytest.raises(Captured):
        default_runner(RunRequest(scenario, tmp_path / "s", None, "2024-05-01", "sid", report=False))
    run_cfg, suite_cfg = seen
    expected = [("One.", None, 0.1), ("Two.", 300, 0.2)] * 3
    assert _said(run_cfg) == _said(suite_cfg) == expected
    # an explicit --turns still wins
    with pytest.raises(Captured):
        cli_main(["run", "--scenario", str(scenario.source), "--turns", "4", "--out", str(tmp_path / "r4")])
    assert [t for t, _, _ in _said(seen[-1])] == ["One.", "Two.", "One.", "Two."]


def test_each_repetition_is_its_own_utterance_with_the_same_words(scenario):
    utts, _ = build_utterances(RunConfig(scenario=scenario))
    assert len(utts) == 6
    assert all((a.samples == b.samples).all() for a, b in zip(utts[0::2], utts[2::2]))
