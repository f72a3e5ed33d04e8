"""The nightly suite end to end: nights in the history, regressions named, verdicts, JUnit and exit codes.

Two kinds of test:
- synthetic: a runner that writes schema-true run folders (`harness.testing.synthetic.make_run`) from seeded
  numbers, so the suite logic is checked exactly and quickly;
- real (marked slow): `vlh run` against the reference agent over real WebRTC, night after night.
"""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main as cli_main
from harness.errors import VlhError
from harness.results.history import History
from harness.testing.synthetic import make_run
from harness.suite.nightly import RunRequest, default_runner, run_suite
from harness.suite.builtin import builtin_path

SHORT = """\
name: short
turns:
  - say: "What time is it?"
repetitions: 6
slo:
  ttfa_p95_ms: 5000
"""
LONG = """\
name: long
turns:
  - say: "Tell me about the trains to the coast on Saturday morning, please."
repetitions: 6
slo:
  ttfa_p95_ms: 5000
"""


class SynthRunner:
    """Writes a schema-true run folder per request; `shift_ms` moves stages (e.g. {"tts_ttfb": 150})."""

    def __init__(self, shift_ms: dict | None = None, crash: set[str] | None = None, error_every: int = 0,
                 no_response_every: int = 0, interrupt_on: str | None = None, stalls_ms: list[float] | None = None):
        self.shift_ms, self.crash, self.error_every = shift_ms or {}, crash or set(), error_every
        self.no_response_every, self.interrupt_on = no_response_every, interrupt_on
        self.stalls_ms = stalls_ms  # harness_stall_ms per turn (cycled): vlh's own event loop stalled
        self.requests: list[RunRequest] = []

    def __call__(self, req: RunRequest) -> Path:
        self.requests.append(req)
        name = req.scenario.name
        if name == self.interrupt_on:
            raise KeyboardInterrupt
        if name in self.crash:
            raise ConnectionRefusedError(f"agent refused the connection for {name}")
        # the night and the scenario fix the data (the suite id ends in a random tag: seeding on it made about 3 %
        # of runs draw a tail turn and broke an SLO a test expects to hold)
        seed = zlib.crc32(f"{name}|{req.night}".encode())
        n = len(req.scenario.turns) * req.scenario.repetitions
        out = make_run(req.out_dir, turns=n, calls=1, seed=seed, shift_ms=self.shift_ms, recordings="none",
                       error_every=self.error_every, no_response_every=self.no_response_every)
        if self.stalls_ms:
            t = pd.read_parquet(out / "turns.parquet")
            t["harness_stall_ms"] = [self.stalls_ms[i % len(self.stalls_ms)] for i in range(len(t))]
            t["ttfa_ms"] += t["harness_stall_ms"]  # what a stall does to the stamps: late by up to its length
            t.to_parquet(out / "turns.parquet")
        return out


@pytest.fixture
def suite_dir(tmp_path):
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "short.yaml").write_text(SHORT)
    (d / "long.yaml").write_text(LONG)
    return d


def night(i: int) -> str:
    return f"2024-05-{i:02d}"


def run(suite_dir, tmp_path, i, runner=None, **kw):
    return run_suite(suite_dir, history=tmp_path / "hist", out_dir=tmp_path / "out", night=night(i),
                     runner=runner or SynthRunner(), **kw)


def verdicts(result) -> dict:
    return json.loads(result.verdicts_path.read_text())


def junit_cases(path) -> dict:
    root = ET.parse(path).getroot()
    return {(ts.get("name"), tc.get("name")): tc for ts in root.findall("testsuite") for tc in ts.findall("testcase")}


# ---- synthetic nights -------------------------------------------------------------------------------------------

def test_seven_nights_five_unchanged_then_tts_regression(suite_dir, tmp_path):
    (suite_dir / "long.yaml").unlink()  # one scenario keeps thirteen nights quick
    for i in range(1, 13):  # 7 baseline nights, then 5 unchanged nights: never a false alarm
        r = run(suite_dir, tmp_path, i)
        assert r.exit_code == 0, (i, [v.headline for v in r.verdicts])
        if i >= 8:
            assert all(v.comparison.compared and not v.comparison.regressed for v in r.verdicts)
    r = run(suite_dir, tmp_path, 13, SynthRunner(shift_ms={"tts_ttfb": 150}))
    assert r.exit_code == 1
    doc = verdicts(r)
    assert doc["exit_code"] == 1 and not doc["partial"]
    for sc in doc["scenarios"]:
        assert sc["status"] == "red"
        comp = sc["comparison"]
        assert comp["regressed"] and comp["moved_stage"] == "tts_ttfb" and comp["moved_stage_label"] == "TTS"
        assert comp["baseline_nights"] == [night(i) for i in range(6, 13)]  # the last 7 nights
        assert "stage that moved: TTS" in sc["headline"]
    cases = junit_cases(r.junit_path)
    for name in ("short",):
        f = cases[(name, "regression tts_ttfb_ms")].find("failure")
        assert f is not None and "TTS regressed" in f.get("message") and "stage that moved: TTS" in f.get("message")
        assert cases[(name, "regression endpointing_ms")].find("failure") is None
        assert cases[(name, "slo ttfa_p95_ms")].find("failure") is None
    h = History(tmp_path / "hist")
    assert sorted(set(h.runs()["night"].astype(str))) == [night(i) for i in range(1, 14)]
    assert not h.runs()["suite_partial"].any()
    tr = h.trend("short")
    assert len(tr) == 13 and tr["ttfa_p50_ms"].iloc[-1] > tr["ttfa_p50_ms"].iloc[:-1].max()


def test_first_nights_are_not_compared_and_say_why(suite_dir, tmp_path):
    r = run(suite_dir, tmp_path, 1)
    assert r.exit_code == 0
    v = r.verdicts[0]
    assert not v.comparison.compared and "no earlier nights" in v.headline
    cases = junit_cases(r.junit_path)
    sk = cases[("long", "regression ttfa_ms")].find("skipped")
    assert sk is not None and "no earlier nights" in sk.get("message")


def test_slo_breach_is_red_exit_1(suite_dir, tmp_path):
    (suite_dir / "short.yaml").write_text(SHORT.replace("ttfa_p95_ms: 5000", "ttfa_p95_ms: 100"))
    r = run(suite_dir, tmp_path, 1)
    assert r.exit_code == 1
    by = {v.scenario: v for v in r.verdicts}
    assert by["short"].status == "red" and by["long"].status == "green"
    f = junit_cases(r.junit_path)[("short", "slo ttfa_p95_ms")].find("failure")
    assert f is not None and "> 100 ms" in f.get("message")


def test_no_response_turns_breach_the_slo(suite_dir, tmp_path):
    (suite_dir / "short.yaml").write_text(SHORT + "  no_response_rate: 0\n")
    r = run(suite_dir, tmp_path, 1, SynthRunner(no_response_every=3))
    by = {v.scenario: v for v in r.verdicts}
    assert by["short"].status == "red" and r.exit_code == 1
    assert any(s.name == "no_response_rate" and not s.passed and s.value == pytest.approx(2 / 6) for s in by["short"].slo)


def test_runner_crash_is_exit_2_and_the_other_scenarios_still_run(suite_dir, tmp_path):
    runner = SynthRunner(crash={"long"})
    r = run(suite_dir, tmp_path, 1, runner)
    assert r.exit_code == 2 and [q.scenario.name for q in runner.requests] == ["long", "short"]
    by = {v.scenario: v for v in r.verdicts}
    assert by["long"].status == "error" and "refused the connection" in by["long"].error
    assert by["short"].status == "green"
    assert set(History(tmp_path / "hist").runs()["scenario"].astype(str)) == {"short"}
    err = junit_cases(r.junit_path)[("long", "run")].find("error")
    assert err is not None and "refused the connection" in err.get("message")


def test_a_starved_harness_is_exit_2_not_a_regression(suite_dir, tmp_path):
    (suite_dir / "long.yaml").unlink()
    (suite_dir / "short.yaml").write_text(SHORT.replace("ttfa_p95_ms: 5000", "ttfa_p95_ms: 1500"))
    for i in range(1, 8):
        run(suite_dir, tmp_path, i)
    r = run(suite_dir, tmp_path, 8, SynthRunner(stalls_ms=[0, 900, 0, 0, 700, 3000]))  # half: not over half
    v = r.verdicts[0]
    assert r.exit_code == 0 and v.status == "green", v.headline
    assert v.slo[0].n == 3  # the SLO is judged on the turns the harness could time
    assert any("starved of CPU" in n for n in v.comparison.notes)
    r = run(suite_dir, tmp_path, 9, SynthRunner(stalls_ms=[900, 1200, 0, 700]))  # cycled: 5 of 6 stalled
    v = r.verdicts[0]
    assert r.exit_code == 2 and v.status == "error"
    assert "starved of CPU on 5 of 6" in v.error and "up to 1200 ms" in v.error
    v = run(suite_dir, tmp_path, 10).verdicts[0]  # that night is no baseline for the next
    assert night(9) not in v.comparison.baseline_nights and night(8) in v.comparison.baseline_nights
    assert any("starved harness left out" in n for n in v.comparison.notes)


def test_agent_errors_in_turns_are_exit_2(suite_dir, tmp_path):
    r = run(suite_dir, tmp_path, 1, SynthRunner(error_every=4))
    assert r.exit_code == 2
    assert all(v.status == "error" and "error:disconnected" in v.error for v in r.verdicts)


def test_invalid_scenario_or_newer_history_stop_before_anything_runs(suite_dir, tmp_path):
    (suite_dir / "bad.yaml").write_text("name: bad\nturns:\n  - say: hi\n    snr_db: 3\n")
    runner = SynthRunner()
    with pytest.raises(VlhError, match=r"bad\.yaml:4: turns\[0\]\.snr_db: unknown field"):
        run(suite_dir, tmp_path, 1, runner)
    (suite_dir / "bad.yaml").unlink()
    h = History(tmp_path / "hist")
    h.meta_file.write_text(json.dumps({**h.meta, "schema_version": 99}))
    with pytest.raises(VlhError, match="newer vlh"):
        run(suite_dir, tmp_path, 1, runner)
    assert runner.requests == [] and not (tmp_path / "out").exists()


def test_interrupted_suite_keeps_finished_scenarios_marked_partial(suite_dir, tmp_path):
    for i in range(1, 4):
        run(suite_dir, tmp_path, i)
    with pytest.raises(KeyboardInterrupt):
        run(suite_dir, tmp_path, 4, SynthRunner(interrupt_on="short"))  # "long" finishes first
    h = History(tmp_path / "hist")
    r4 = h.runs()
    r4 = r4[r4["night"].astype(str) == night(4)]
    assert list(r4["scenario"].astype(str)) == ["long"] and r4["suite_partial"].all()
    suite_folder = next(p for p in (tmp_path / "out").iterdir() if p.name.startswith(night(4)))
    doc = json.loads((suite_folder / "verdicts.json").read_text())
    assert doc["partial"] and doc["not_run"] == ["short"] and [s["scenario"] for s in doc["scenarios"]] == ["long"]
    root = ET.parse(suite_folder / "junit.xml").getroot()
    assert [ts.get("name") for ts in root.findall("testsuite")] == ["long"]
    # the next night uses the finished scenario of the interrupted night, and says so
    r = run(suite_dir, tmp_path, 5)
    long = next(v for v in r.verdicts if v.scenario == "long")
    assert night(4) in long.comparison.baseline_nights
    assert any("interrupted suite" in n for n in long.comparison.notes)


def test_changed_stimulus_is_not_compared_with_older_nights(suite_dir, tmp_path):
    for i in range(1, 5):
        run(suite_dir, tmp_path, i)
    (suite_dir / "short.yaml").write_text(SHORT.replace("What time is it?", "What day is it?"))
    r = run(suite_dir, tmp_path, 5)
    short = next(v for v in r.verdicts if v.scenario == "short")
    assert short.comparison.baseline_nights == [] and not short.comparison.compared
    assert any("different version of the scenario" in n for n in short.comparison.notes)
    long = next(v for v in r.verdicts if v.scenario == "long")
    assert len(long.comparison.baseline_nights) == 4


def test_secrets_never_reach_verdicts_junit_or_history(suite_dir, tmp_path):
    runner = SynthRunner()
    url = "https://bob:hunter2@agent.example:8443/api/offer?token=s3cr3t-t0ken"
    r = run(suite_dir, tmp_path, 1, runner, agent_url=url, headers={"Authorization": "Bearer h3ad3r-secret"})
    assert runner.requests[0].agent_url == url and runner.requests[0].headers["Authorization"].endswith("secret")
    blobs = [r.verdicts_path.read_bytes(), r.junit_path.read_bytes()]
    blobs += [p.read_bytes() for p in (tmp_path / "hist").rglob("*") if p.is_file()]
    for blob in blobs:
        for secret in (b"hunter2", b"s3cr3t-t0ken", b"h3ad3r-secret", b"bob:"):
            assert secret not in blob
    assert "agent.example:8443" in verdicts(r)["agent"]


def test_request_carries_the_scenario_agent_profile_as_data(suite_dir, tmp_path):
    (suite_dir / "short.yaml").write_text(SHORT + "agent: {profile: fast, tts_ttfb_ms: 180}\n")
    runner = SynthRunner()
    run(suite_dir, tmp_path, 1, runner)
    req = next(q for q in runner.requests if q.scenario.name == "short")
    assert req.agent_url is None and req.scenario.agent.profile == "fast"
    assert req.scenario.agent.overrides() == {"tts_ttfb_ms": 180}
    assert req.out_dir.parent.name == "runs" and req.night == night(1)


def test_cli_exit_codes_and_outputs(suite_dir, tmp_path, monkeypatch, capsys):
    import harness.suite.nightly as suite_mod

    runner = SynthRunner()
    monkeypatch.setattr(suite_mod, "default_runner", runner)
    args = ["suite", str(suite_dir), "--history", str(tmp_path / "h"), "--out", str(tmp_path / "o"),
            "--baseline", "3", "--min-effect-ms", "40", "--min-effect-pct", "5", "--alpha", "0.01"]
    for i in range(1, 5):
        assert cli_main(args + ["--night", night(i), "--junit", str(tmp_path / f"j{i}.xml")]) == 0
    out = capsys.readouterr().out
    assert "GREEN short" in out and "green; verdicts" in out
    runner.shift_ms = {"tts_ttfb": 150}
    assert cli_main(args + ["--night", night(5), "--junit", str(tmp_path / "j5.xml")]) == 1
    out = capsys.readouterr().out
    assert "RED   short" in out and "TTS" in out
    assert junit_cases(tmp_path / "j5.xml")[("short", "regression tts_ttfb_ms")].find("failure") is not None
    assert cli_main(args + ["--night", "2024-13-01"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert cli_main(args + ["--alpha", "2"]) == 2


def test_cli_unreachable_agent_is_exit_3(tmp_path, capsys):
    """The real runner (`vlh run`'s engine) against a port where nothing listens: every scenario errors as
    unreachable, so the suite exits 3 with one line per scenario, no traceback."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "one.yaml").write_text(SHORT.replace("name: short", "name: one").replace("repetitions: 6", "repetitions: 1"))
    code = cli_main(["suite", str(d), "--agent", f"http://127.0.0.1:{port}/api/offer", "--history",
                     str(tmp_path / "h"), "--out", str(tmp_path / "o"), "--night", night(1), "--no-report"])
    captured = capsys.readouterr()
    assert code == 3, (captured.out, captured.err)
    assert "Traceback" not in captured.out + captured.err
    doc = json.loads(next((tmp_path / "o").glob("*/verdicts.json")).read_text())
    assert doc["exit_code"] == 3
    (v,) = doc["scenarios"]
    assert v["status"] == "error" and "unreachable" in json.dumps(v), v


def test_default_runner_needs_harness_run(monkeypatch, suite_dir):
    import builtins

    real_import = builtins.__import__

    def no_run(name, *a, **k):
        if name == "harness.measure.runner":
            raise ImportError("No module named 'harness.measure.runner'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_run)
    from harness.suite.scenario import load_scenario

    req = RunRequest(load_scenario(suite_dir / "short.yaml"), Path("/tmp/x"), None, night(1), "s")
    with pytest.raises(VlhError, match="vlh run is not available"):
        default_runner(req)


# ---- real nights: vlh run against the reference agent -----------------------------------------------------------

def _have_run() -> bool:
    try:
        if importlib.util.find_spec("harness.measure.runner") is None:
            return False
        import harness.measure.runner as hr

        return hasattr(hr, "run_measurement") and hasattr(hr, "RunConfig") and hasattr(hr, "ReferenceAgent")
    except ImportError:
        return False


real = pytest.mark.skipif(not _have_run(), reason="harness.measure.runner (vlh run) has not landed: the real-agent suite tests "
                                                  "are wired to it and run as soon as it exists")

TINY = """\
name: tiny
description: a short question, short replies (keeps a simulated night short)
turns:
  - say: "What time is it?"
    pause_after_ms: 300
repetitions: 5
timeout_s: 8
slo:
  ttfa_p95_ms: 5000
"""


@real
@pytest.mark.slow
def test_real_nights_then_tts_plus_150_ms(tmp_path):
    """Done means (issue 7): seven nights against the reference agent, five unchanged nights without a false alarm,
    then a night whose deploy made TTS 150 ms slower: regression, TTS named, exit 1, JUnit says so.

    One reference agent process serves the twelve unchanged nights (`--agent URL`, as against staging); the last
    night gets a new agent with tts_ttfb_ms +150."""
    from harness.measure.runner import ReferenceAgent

    scen = tmp_path / "scen"
    scen.mkdir()
    (scen / "tiny.yaml").write_text(TINY)
    kw = dict(history=tmp_path / "hist", out_dir=tmp_path / "out", run_reports=False)
    settings = {"responses": ["Sure, at noon."], "tts_ttfb_ms": 30}
    codes, heads = [], []
    agent = ReferenceAgent("fast", settings, [], tmp_path / "truth-before.jsonl")
    try:
        url = agent.start()
        for i in range(1, 13):
            r = run_suite(scen, night=night(i), agent_url=url, **kw)
            codes.append(r.exit_code)
            heads.append(r.verdicts[0].headline)
    finally:
        agent.stop()
    assert codes == [0] * 12, "\n".join(f"{night(i + 1)}: {c} {h}" for i, (c, h) in enumerate(zip(codes, heads)))
    agent = ReferenceAgent("fast", {**settings, "tts_ttfb_ms": 180}, [], tmp_path / "truth-after.jsonl")
    try:
        r = run_suite(scen, night=night(13), agent_url=agent.start(), **kw)
    finally:
        agent.stop()
    v = r.verdicts[0]
    assert r.exit_code == 1, v.headline
    assert v.comparison.regressed and v.comparison.moved_stage.metric == "tts_ttfb_ms", v.headline
    m = {x.metric: x for x in v.comparison.metrics}["tts_ttfb_ms"]
    assert m.p50_shift_ms == pytest.approx(150, abs=10)  # the agent reports its TTS stage: ±5 ms each side
    f = junit_cases(r.junit_path)[("tiny", "regression tts_ttfb_ms")].find("failure")
    assert f is not None and "TTS regressed" in f.get("message")
    assert len(History(tmp_path / "hist").turns("tiny")) == 13 * 5


@real
@pytest.mark.slow
def test_real_noisy_mic_scenario_boundaries_within_5_ms(tmp_path):
    """The nightly noisy-mic scenario (pink noise, 20 dB SNR) against the reference agent: the end of user speech is
    still found within ±5 ms of when the harness really stopped speaking."""
    from harness.measure.verify import errors

    src = (builtin_path("nightly") / "noisy-mic.yaml").read_text()
    scen = tmp_path / "scen"
    scen.mkdir()
    (scen / "noisy-mic.yaml").write_text(src.replace("repetitions: 6", "repetitions: 3"))
    from hostload import disturbed, remeasured

    def run(name):
        return run_suite(scen, history=tmp_path / name / "hist", out_dir=tmp_path / name / "out", night=night(1),
                         run_reports=False).verdicts[0]

    def check(v):
        assert v.status != "error", v.headline
        err = errors(v.run_dir)
        assert len(err) >= 2, err
        worst = err["user_speech_end_ms"].abs().max()
        assert worst <= 5.0, err["user_speech_end_ms"].round(2).tolist()

    # a run the host visibly disturbed (late mic frames move the speech against the live noise) is measured once
    # more, same ±5 ms; an undisturbed failure fails at once
    remeasured(run, check, "noisy-mic", why=lambda v: disturbed(v.run_dir))


def test_suite_result_paths(suite_dir, tmp_path):
    r = run(suite_dir, tmp_path, 1)
    assert r.suite_dir.parent == tmp_path / "out" and r.suite_dir.name == r.suite_id
    assert r.junit_path == r.suite_dir / "junit.xml" and r.verdicts_path.exists()
    doc = verdicts(r)
    assert doc["night"] == night(1) and doc["exit_code"] == 0
    for sc in doc["scenarios"]:
        assert Path(sc["run_dir"]).is_absolute() and (Path(sc["run_dir"]) / "run.json").exists()
    assert isinstance(pd.read_parquet(tmp_path / "hist" / "turns"), pd.DataFrame)
