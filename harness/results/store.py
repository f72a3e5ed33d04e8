"""Run folders (docs/schema.md): turns (Parquet + CSV), events, run.json, recordings.

Everything is rewritten after every finished call, so an interrupted run keeps each finished turn on disk.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from harness import __version__
from harness.audio.capture import Capture
from harness.errors import VlhError
from harness.results.schema import STAGES
from harness.results.stats import describe
from harness.versions import versions

PERCENTILES = (50, 90, 95, 99)


def default_out_dir(root: str | Path = "reports") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / stamp
    out, i = base, 1
    while out.exists():
        i += 1
        out = Path(f"{base}-{i}")
    return out


def host_info() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}


def quantiles(values) -> dict | None:
    out = describe(values, {f"p{p}": p for p in PERCENTILES})
    return out if out["n"] else None


def summarize(df: pd.DataFrame) -> dict:
    ok = df[df["status"] == "ok"] if len(df) else df
    summary = {"turns": int(len(df)), "status_counts": {k: int(v) for k, v in df["status"].value_counts().items()}
               if len(df) else {}}
    for col in ("ttfa_ms", "provider_ttft_ms", "gap_ms"):
        summary[col] = quantiles(ok[col]) if col in ok else None
    summary["stages_p50_ms"] = {s: float(ok[f"{s}_ms"].dropna().median()) for s in STAGES
                                if f"{s}_ms" in ok and ok[f"{s}_ms"].notna().any()}
    for col in ("unattributed_ms", "residual_ms"):
        if col in ok and ok[col].notna().any():
            summary["stages_p50_ms"][col[:-3]] = float(ok[col].dropna().median())
    return summary


# what vlh writes into a run folder: cleared when a failed or empty run's folder is reused
RUN_FILES = ("run.json", "turns.parquet", "turns.csv", "events.parquet", "report.html", "agent-truth.jsonl",
             "agent.log", "agent-telemetry.jsonl", ".run.json.tmp", ".turns.parquet.tmp")
RUN_GLOBS = ("recordings/call-*.wav", "recordings/call-*.playout.parquet", "parts/*", "parts/.*")


def run_state(meta: dict) -> str:
    """'running', 'complete', 'interrupted' or 'failed' (run.json `state`; folders written before it existed:
    'interrupted' if partial, else 'complete')."""
    state = meta.get("state")
    if state in ("running", "complete", "interrupted", "failed"):
        return state
    return "interrupted" if meta.get("partial") else "complete"


def reusable(meta: dict) -> bool:
    """A folder may take a new run without --force when its run failed or holds no turn."""
    turns = (meta.get("summary") or {}).get("turns", 0)
    return run_state(meta) == "failed" or not turns


def clear_run(run_dir: Path) -> None:
    """Remove what an earlier (failed or empty) run wrote into `run_dir` — vlh's own file names only."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for pattern in RUN_GLOBS:
        for f in run_dir.glob(pattern):
            if f.is_file():
                f.unlink()
    if (run_dir / "parts").is_dir() and not any((run_dir / "parts").iterdir()):
        (run_dir / "parts").rmdir()


class RunStore:
    def __init__(self, out_dir: str | Path, meta: dict, force: bool = False):
        self.dir = Path(out_dir)
        prior = self.dir / "run.json"
        if prior.exists() and not force:
            try:
                old = json.loads(prior.read_text())
            except (OSError, ValueError):
                old = None
            if not isinstance(old, dict) or not reusable(old):
                raise VlhError(f"{self.dir}: already holds a run (run.json); choose another --out or pass --force")
            clear_run(self.dir)
        elif prior.exists():
            clear_run(self.dir)
        (self.dir / "recordings").mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        self.meta.setdefault("run_id", self.dir.name)
        self.meta.update(vlh_version=__version__, versions=versions(), host=host_info(),
                         created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        # one instant on both clocks: the `_mono` columns → real wall-clock times (OTLP export)
        self.meta["wall_clock"] = {"mono": time.monotonic(), "unix_ns": time.time_ns()}
        self.rows: list[dict] = []
        self.events: list[dict] = []
        self.clock: list[dict] = []
        self.telemetry_counts: dict = {}
        self.started = time.time()

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    def add_call(self, call: int, capture: Capture | None, rows: list[dict], events: list[dict],
                 clock: dict | None = None, telemetry_counts: dict | None = None) -> None:
        if capture is not None and len(capture):
            capture.write(self.dir / "recordings" / f"call-{call}.wav", force=True)
        for r in rows:
            r.setdefault("run_id", self.run_id)
            r.setdefault("scenario", self.meta.get("scenario"))
            r["recording"] = f"recordings/call-{call}.wav" if capture is not None else None
        self.rows.extend(rows)
        self.events.extend(events)
        if clock:
            self.clock.append({"call": call, **clock})
        for k, v in (telemetry_counts or {}).items():
            self.telemetry_counts[k] = self.telemetry_counts.get(k, 0) + v

    def merge_parts(self) -> None:
        """Take in what worker processes wrote under parts/ (see PartStore), then remove it."""
        parts = self.dir / "parts"
        if not parts.is_dir():
            return
        for f in sorted(parts.glob("call-*.json")):
            d = json.loads(f.read_text())
            self.add_call(d["call"], None, d["rows"], d["events"], d.get("clock"), d.get("counts"))
            for r in self.rows[-len(d["rows"]):] if d["rows"] else []:
                r["recording"] = d.get("recording")
            f.unlink()
        for f in parts.glob("*"):
            f.unlink()
        parts.rmdir()

    def part_errors(self) -> list[str]:
        f = self.dir / "parts" / "errors.txt"
        return f.read_text().splitlines() if f.exists() else []

    def dataframe(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        if len(df):
            df = df.sort_values(["call", "turn"], kind="stable").reset_index(drop=True)
        return df

    def flush(self, partial: bool = False, extra: dict | None = None, state: str | None = None) -> dict:
        """Write turns, events and run.json. `state` ('running', 'complete', 'interrupted', 'failed'; default:
        'running' while partial, else 'complete') says whether run.json describes a finished run."""
        df = self.dataframe()
        tmp = self.dir / ".turns.parquet.tmp"
        if len(df):
            df.to_parquet(tmp, index=False)
            os.replace(tmp, self.dir / "turns.parquet")
            df.to_csv(self.dir / "turns.csv", index=False)
            pd.DataFrame(self.events or [], columns=["call", "turn", "name", "t_mono", "uncertainty_ms", "source",
                                                     "origin", "raw"]).to_parquet(self.dir / "events.parquet",
                                                                                  index=False)
        meta = dict(self.meta)
        meta.update(partial=partial, state=state or ("running" if partial else "complete"), clock=self.clock, telemetry=self.telemetry_counts,
                    duration_s=round(time.time() - self.started, 3))
        meta["summary"] = summarize(df) if len(df) else {"turns": 0, "status_counts": {}}
        if extra:
            meta.update(extra)
        tmpj = self.dir / ".run.json.tmp"
        tmpj.write_text(json.dumps(meta, indent=1, default=_json_default))
        os.replace(tmpj, self.dir / "run.json")
        return meta


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def load_run(run_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise VlhError(f"{run_dir}: not a vlh run folder (no run.json)")
    meta = json.loads((run_dir / "run.json").read_text())
    p = run_dir / "turns.parquet"
    df = pd.read_parquet(p) if p.exists() else pd.DataFrame()
    return meta, df


class PartStore:
    """What a worker process writes: its calls' captures in recordings/, everything else as parts/call-N.json,
    one file per finished call (so an interrupted worker loses nothing it finished)."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        (run_dir / "parts").mkdir(parents=True, exist_ok=True)
        (run_dir / "recordings").mkdir(parents=True, exist_ok=True)

    def add_call(self, call, capture, rows, events, clock=None, telemetry_counts=None) -> None:
        rec = None
        if capture is not None and len(capture):
            capture.write(self.dir / "recordings" / f"call-{call}.wav", force=True)
            rec = f"recordings/call-{call}.wav"
        tmp = self.dir / "parts" / f".call-{call}.tmp"
        tmp.write_text(json.dumps({"call": call, "rows": rows, "events": events, "clock": clock,
                                   "counts": telemetry_counts, "recording": rec}, default=_json_default))
        os.replace(tmp, self.dir / "parts" / f"call-{call}.json")

    def flush(self, partial: bool = False) -> None:
        pass

    def error(self, message: str) -> None:
        with open(self.dir / "parts" / "errors.txt", "a") as f:
            f.write(message + "\n")
