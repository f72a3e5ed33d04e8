"""The nightly suite: every scenario through a runner, into the history, compared, judged (docs/suite.md).

``run_suite(...)`` validates every scenario file and opens the history (version check) before anything runs, then
for each scenario: runner → run folder → SLO verdicts → history → comparison with the last N nights. It writes
``verdicts.json`` and a JUnit file into the suite folder and returns a ``SuiteResult`` whose ``exit_code`` is
0 (all green), 1 (an SLO breach or a regression) or 2 (a harness/agent error: no verdict possible for a scenario).

The runner is a callable ``runner(RunRequest) -> Path`` (the run folder). The default one imports ``harness.measure.runner``
lazily and calls ``run_measurement(request.to_config())``. Ctrl-C: the finished scenarios stay in the history
marked ``suite_partial``, verdicts and JUnit are written (``partial: true``), then KeyboardInterrupt propagates.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from harness import __version__
from harness.errors import VlhError
from harness.results.headline import headline_numbers
from harness.results.history import (
    History,
    check_night,
    new_suite_id,
    read_run_folder,
    tonight,
)
from harness.results.redact import redact_url
from harness.results.slo import SloResult, evaluate
from harness.suite import junit
from harness.suite.regress import Comparison, Policy, compare, unreliable
from harness.suite.scenario import Scenario, load_scenarios

log = logging.getLogger(__name__)

EXIT_GREEN, EXIT_RED, EXIT_ERROR, EXIT_UNREACHABLE = 0, 1, 2, 3


@dataclass
class RunRequest:
    """What the suite asks a runner to measure."""

    scenario: Scenario
    out_dir: Path  # the runner writes the run folder here (or inside it) and returns its path
    agent_url: str | None  # None: start the reference agent with scenario.agent (profile + overrides)
    night: str
    suite_id: str
    headers: dict[str, str] = field(default_factory=dict)  # signalling headers: secrets, never written anywhere
    report: bool = True  # write each run's report.html


Runner = Callable[[RunRequest], Path]


def default_runner(request: RunRequest) -> Path:
    """Measure with `vlh run` (harness.measure.runner, imported here so the suite logic does not need it)."""
    try:
        from harness.measure.runner import RunConfig, run_measurement
    except ImportError as exc:
        raise VlhError(f"vlh run is not available in this installation ({exc}); cannot measure scenarios") from None
    sc = request.scenario
    cfg = RunConfig(
        agent_url=request.agent_url, agent_profile=sc.agent.profile, agent_overrides=sc.agent.overrides(),
        scenario=sc, turns=None, calls=1,  # None: the scenario's turns × repetitions (Scenario.played_turns)
        out_dir=request.out_dir, headers=dict(request.headers), progress=False, report=request.report,
        transport=sc.transport or "webrtc", provider=sc.provider or "twilio",
    )
    return Path(run_measurement(cfg))


@dataclass
class Verdict:
    scenario: str
    file: str
    status: str = "error"  # green | red | error
    run_dir: str | None = None
    run_id: str | None = None
    elapsed_s: float = 0.0
    error: str | None = None
    unreachable: bool = False  # the error: the agent could not be reached at all (exit 3 when every error is)
    slo: list[SloResult] = field(default_factory=list)
    comparison: Comparison | None = None
    headline: str = ""
    numbers: dict = field(default_factory=dict)  # tonight's headline figures (see `headline_numbers`)

    def to_dict(self) -> dict:
        return _clean({
            "scenario": self.scenario, "file": self.file, "status": self.status, "run_dir": self.run_dir,
            "run_id": self.run_id, "elapsed_s": self.elapsed_s, "error": self.error, "headline": self.headline,
            "numbers": self.numbers, "slo": [s.to_dict() for s in self.slo],
            "comparison": self.comparison.to_dict() if self.comparison else None,
        })


@dataclass
class SuiteResult:
    suite_id: str
    night: str
    suite_dir: Path
    verdicts: list[Verdict]
    partial: bool
    junit_path: Path
    verdicts_path: Path

    @property
    def exit_code(self) -> int:
        return exit_code(self.verdicts)


def exit_code(verdicts: list[Verdict]) -> int:
    errors = [v for v in verdicts if v.status == "error"]
    if errors:
        return EXIT_UNREACHABLE if all(v.unreachable for v in errors) else EXIT_ERROR
    if any(v.status == "red" for v in verdicts):
        return EXIT_RED
    return EXIT_GREEN


def run_suite(scenario_dir: str | Path, *, history: str | Path, out_dir: str | Path = "reports/suites",
              agent_url: str | None = None, baseline: int = 7, policy: Policy | None = None,
              junit_path: str | Path | None = None, night: str | None = None, runner: Runner | None = None,
              headers: dict[str, str] | None = None, run_reports: bool = True,
              echo: Callable[[str], None] | None = None) -> SuiteResult:
    """Run every scenario of `scenario_dir` (see the module docstring); ``result.exit_code`` is the CI verdict."""
    scenarios = load_scenarios(scenario_dir)  # every file checked before anything runs
    hist = History(history)  # its version checked before anything runs
    night = check_night(night) if night else tonight()
    if baseline < 1:
        raise VlhError(f"--baseline {baseline}: compare with at least 1 earlier night")
    policy = policy or Policy()
    runner = runner or default_runner
    echo = echo or (lambda s: None)
    suite_id = new_suite_id(night)
    suite_dir = Path(out_dir) / suite_id
    suite_dir.mkdir(parents=True, exist_ok=False)
    junit_path = Path(junit_path) if junit_path else suite_dir / "junit.xml"
    target_url = redact_url(agent_url) if agent_url else None
    started = _utcnow()
    echo(f"suite {suite_id}: {len(scenarios)} scenarios, night {night}, history {hist.path}, "
         f"agent {target_url or 'reference agent (per scenario profile)'}")
    verdicts: list[Verdict] = []
    partial = True
    try:
        for sc in scenarios:
            v = _run_one(sc, runner=runner, hist=hist, suite_dir=suite_dir, agent_url=agent_url,
                         request_extra={"headers": headers or {}, "report": run_reports},
                         target_url=target_url, night=night, suite_id=suite_id, baseline=baseline, policy=policy)
            verdicts.append(v)
            echo(f"  {v.status.upper():5} {sc.name}: {v.headline}")
        partial = False
        hist.mark_suite_complete(suite_id)
    finally:  # also on Ctrl-C: what finished is judged and written
        doc = {
            "suite_id": suite_id, "night": night, "vlh_version": __version__, "started_utc": started,
            "finished_utc": _utcnow(), "partial": partial, "exit_code": exit_code(verdicts),
            "scenario_dir": str(Path(scenario_dir).resolve()), "history": str(hist.path.resolve()),
            "agent": target_url, "baseline_nights": baseline, "policy": policy.describe(),
            "not_run": [s.name for s in scenarios[len(verdicts):]],
            "scenarios": [v.to_dict() for v in verdicts],
        }
        verdicts_path = suite_dir / "verdicts.json"
        verdicts_path.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        junit.write(doc["scenarios"], junit_path, name=f"vlh suite {night}",
                    properties={"suite_id": suite_id, "night": night, "partial": str(partial).lower(),
                                "agent": target_url or "reference"})
        _write_suite_report(suite_dir, echo)
    return SuiteResult(suite_id, night, suite_dir, verdicts, partial, junit_path, verdicts_path)


def _run_one(sc: Scenario, *, runner: Runner, hist: History, suite_dir: Path, agent_url: str | None,
             request_extra: dict, target_url: str | None, night: str, suite_id: str, baseline: int, policy: Policy) -> Verdict:
    v = Verdict(sc.name, str(sc.source or ""))
    t0 = time.monotonic()
    try:
        request = RunRequest(sc, suite_dir / "runs" / sc.name, agent_url, night, suite_id, **request_extra)
        run_dir = Path(runner(request))
        run, turns = read_run_folder(run_dir)
    except VlhError as exc:
        v.unreachable = exc.exit_code == EXIT_UNREACHABLE
        return _error(v, t0, str(exc))
    except Exception as exc:  # noqa: BLE001 - a crash of the runner or the agent is a verdict (exit 2), not a traceback
        log.debug("runner crashed on %s:\n%s", sc.name, traceback.format_exc())
        return _error(v, t0, f"{type(exc).__name__}: {exc} (scenario {sc.name}; run with -vv for the traceback)")
    v.run_dir, v.run_id = str(run_dir.resolve()), str(run["run_id"])
    answered = turns[turns["status"].astype(str) == "ok"]
    v.numbers = headline_numbers(turns)
    starved = unreliable(answered, policy.max_harness_stall_ms)
    # SLOs on what the harness could time (no_response and error turns stay: they carry no stamps to doubt)
    v.slo = evaluate(turns.drop(index=answered.index[starved.to_numpy()]), sc.slo.thresholds())
    target = target_url or "reference:" + json.dumps(sc.agent.as_data(), sort_keys=True)
    try:
        hist.append_run(run_dir, scenario=sc.name, night=night, suite_id=suite_id, fingerprint=sc.fingerprint,
                        target=target, slo=[s.to_dict() for s in v.slo], n_unreliable=int(starved.sum()))
    except VlhError as exc:
        return _error(v, t0, str(exc))
    base = hist.baseline(sc.name, night, baseline, sc.fingerprint)
    notes = list(base.notes)
    if not base.turns.empty:
        runs = hist.runs(sc.name)
        targets = set(runs.loc[runs["entry"].isin(base.entries), "target"].astype(str))
        if targets - {target}:
            notes.append("the agent under test differs from some baseline nights ("
                         + "; ".join(sorted(targets - {target})) + f" vs {target})")
    v.comparison = compare(turns, base.turns, scenario=sc.name, night=night, baseline_nights=base.nights,
                           policy=policy, notes=notes)
    v.elapsed_s = time.monotonic() - t0
    v.status, v.error = _judge(sc.name, run, run_dir, turns, answered, starved, v)
    bits = [f"SLO {sum(s.passed for s in v.slo)}/{len(v.slo)} met"] if v.slo else []
    bits += [s.detail for s in v.slo if not s.passed]
    bits.append(v.comparison.headline().removeprefix(f"{sc.name}: "))
    if v.error:
        bits.insert(0, v.error)
    v.headline = "; ".join(bits)
    return v


def _judge(name: str, run: dict, run_dir: Path, turns: pd.DataFrame, answered: pd.DataFrame, starved: pd.Series,
           v: Verdict) -> tuple[str, str | None]:
    """(status, error): error when nothing trustworthy was measured, red on an SLO breach or regression."""
    if run.get("partial"):
        return "error", f"the run of {name} did not finish (run.json partial: true)"
    if len(answered) and starved.sum() * 2 > len(answered):
        cols = [c for c in ("harness_stall_ms", "mic_late_ms") if c in answered.columns]
        worst = max((pd.to_numeric(answered[c], errors="coerce").max() for c in cols), default=math.nan)
        how = f" (stalls up to {worst:.0f} ms)" if math.isfinite(worst) else ""
        return "error", (f"{name}: the harness was starved of CPU on {int(starved.sum())} of {len(answered)} "
                         f"answered turns{how}: its numbers cannot be trusted; run the suite on a quieter host "
                         "(see harness_stall_ms, mic_late_ms in turns.csv)")
    errors = sorted(set(turns.loc[turns["status"].astype(str).str.startswith("error"), "status"].astype(str)))
    if errors:
        return "error", f"{name}: turns ended in {', '.join(errors)} (see {run_dir / 'turns.csv'})"
    if any(not s.passed for s in v.slo) or v.comparison.regressed:
        return "red", None
    return "green", None


def _write_suite_report(suite_dir: Path, echo: Callable[[str], None]) -> None:
    """<suite_dir>/report.html; a report that cannot be written is a warning, never a changed verdict."""
    try:
        from harness.report.suite import write_suite_report

        write_suite_report(suite_dir)
    except Exception as exc:  # noqa: BLE001 - the verdicts and JUnit are written; the page is a convenience
        log.debug("suite report failed:\n%s", traceback.format_exc())
        echo(f"warning: suite report not written ({type(exc).__name__}: {exc})")


def _error(v: Verdict, t0: float, message: str) -> Verdict:
    v.status, v.error, v.headline = "error", message, message
    v.elapsed_s = time.monotonic() - t0
    return v


def _clean(o):
    """JSON-safe: NaN/inf become None, tuples become lists."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        try:
            return _clean(o.item())
        except (TypeError, ValueError):
            return o
    return o


def _utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
