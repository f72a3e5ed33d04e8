"""`vlh load --find-capacity`: step the number of concurrent callers up (one Locust session per step, each held
`step_time_s`, its calls finished before the next), judge each step's turns against the SLOs with confidence
bounds (harness.results.capacity), stop at the first step that breaks one, and report the largest level that met
every SLO. All steps go into one run folder (turn column `load_level`); one reference agent serves them all."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.errors import VlhError
from harness.load.session import (LoadConfig, call_length_s, finish, gather_into, load_meta, run_locust,
                                  start_agent)

DEFAULT_STEPS = (1, 2, 4, 8, 12, 16)


def parse_slo(text: str) -> dict[str, float]:
    """'ttfa_p95_ms=1500,no_response_rate=0.01' → thresholds (names as in scenario files)."""
    from harness.results.slo import SLOS

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise VlhError(f"--slo {part!r}: expected NAME=LIMIT, e.g. ttfa_p95_ms=1500")
        k, v = (x.strip() for x in part.split("=", 1))
        if k not in SLOS:
            raise VlhError(f"--slo {k}: unknown SLO; known: {', '.join(SLOS)}")
        try:
            out[k] = float(v)
        except ValueError:
            raise VlhError(f"--slo {k}={v}: the limit must be a number") from None
    if not out:
        raise VlhError("--slo: give at least one NAME=LIMIT")
    return out


def find_capacity(cfg: LoadConfig, thresholds: dict[str, float], steps=DEFAULT_STEPS,
                  step_time_s: float = 60.0) -> Path:
    from harness.measure.runner import RunConfig, build_utterances
    from harness.results.capacity import capacity_statement, step_verdict
    from harness.results.store import RunStore, default_out_dir

    if cfg.role != "local":
        raise VlhError("--find-capacity runs its own local master and workers (--workers K)")
    utterances, scenario_name = build_utterances(RunConfig(scenario=cfg.scenario, turns=cfg.turns,
                                                           timeout_s=cfg.timeout_s))
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir()
    meta = load_meta(cfg, scenario_name, len(utterances))
    meta["load"].update(find_capacity=True, steps=list(steps), step_time_s=step_time_s, slo=thresholds)
    store = RunStore(out, meta, force=cfg.force)
    agent = None
    verdicts: list[dict] = []
    try:
        cfg, url, agent = start_agent(cfg, store, out)
        for level in steps:
            step = dataclasses.replace(cfg, users=level, spawn_rate=max(cfg.spawn_rate, float(level)),
                                       run_time_s=step_time_s, quiet=True)
            run_locust(step, url, scenario_name, out, call_length_s(utterances), tag=f"-level{level}")
            gather_into(store, level)
            df = store.dataframe()
            v = step_verdict(df[df["load_level"] == level], thresholds, level)
            verdicts.append(v)
            print(f"vlh load: {level} concurrent calls: {v['turns']} turns, "
                  + "; ".join(s["detail"] for s in v["slos"]) + (" — met" if v["met"] else " — BROKE"), flush=True)
            store.flush(partial=True, extra={"capacity": {"steps": verdicts}})
            if not v["met"]:
                break
    finally:
        if agent is not None:
            agent.stop()
    cap = capacity_statement(verdicts)
    finish(store, cfg, extra={"capacity": {**cap, "steps": verdicts, "slo": thresholds}})
    print("vlh load: " + cap["statement"], flush=True)
    return out
