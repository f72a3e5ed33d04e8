"""SLO evaluation: a run's turns against the thresholds of its scenario (``slo:`` in the scenario file).

Every SLO is an upper bound ("at most"). Values come from the turn rows (docs/schema.md turn columns):

- ``ttfa_p50_ms`` / ``ttfa_p95_ms``: percentile (numpy linear interpolation) of ``ttfa_ms`` over turns that got a
  reply (``status == ok``). No answered turn: the value is undefined and the SLO fails.
- ``no_response_rate``: turns with ``status == no_response`` / all turns. (``error:*`` turns are harness/agent
  errors, reported as errors by the suite, and do not count here.)
- ``stutter_gaps_per_min``: stutter gaps summed over answered turns / minutes of reply audio
  (``reply_duration_ms``). No reply audio at all: undefined, fails.
- ``interruption_p50_ms`` / ``interruption_p95_ms``: percentile of ``interruption_ms`` over barge-in turns that
  measured one. None measured: undefined, fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd

from harness.results.stats import percentile


@dataclass
class SloResult:
    name: str
    threshold: float
    value: float | None
    passed: bool
    n: int
    unit: str
    detail: str

    def describe(self) -> str:
        return self.detail

    def to_dict(self) -> dict:
        return asdict(self)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].astype(str) == "ok"] if "status" in df.columns else df.iloc[0:0]


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.array([], dtype=float)
    v = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v)]


def _percentile(col: str, q: float, rows: Callable[[pd.DataFrame], pd.DataFrame]):
    def fn(df: pd.DataFrame) -> tuple[float | None, int, str]:
        v = _col(rows(df), col)
        if len(v) == 0:
            return None, 0, f"no {col} measured"
        return percentile(v, q), len(v), f"over {len(v)} turns"
    return fn


def _no_response_rate(df: pd.DataFrame) -> tuple[float | None, int, str]:
    n = len(df)
    if n == 0:
        return None, 0, "no turns"
    k = int((df["status"].astype(str) == "no_response").sum())
    return k / n, n, f"{k} of {n} turns unanswered"


def _stutter_per_min(df: pd.DataFrame) -> tuple[float | None, int, str]:
    ok = _ok(df)
    dur = _col(ok, "reply_duration_ms")
    minutes = float(dur.sum()) / 60000.0
    if minutes <= 0:
        return None, 0, "no reply audio measured"
    gaps = float(_col(ok, "stutter_gaps").sum())
    return gaps / minutes, len(dur), f"{gaps:.0f} gaps in {minutes * 60:.1f} s of reply"


def _barge_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df  # interruption_ms is only set on barge-in turns


#: name -> (how it is computed, unit)
SLOS: dict[str, tuple[Callable[[pd.DataFrame], tuple[float | None, int, str]], str]] = {
    "ttfa_p50_ms": (_percentile("ttfa_ms", 50, _ok), "ms"),
    "ttfa_p95_ms": (_percentile("ttfa_ms", 95, _ok), "ms"),
    "no_response_rate": (_no_response_rate, ""),
    "stutter_gaps_per_min": (_stutter_per_min, "/min"),
    "interruption_p50_ms": (_percentile("interruption_ms", 50, _barge_rows), "ms"),
    "interruption_p95_ms": (_percentile("interruption_ms", 95, _barge_rows), "ms"),
}


def evaluate(turns: pd.DataFrame, thresholds: dict[str, float]) -> list[SloResult]:
    """One result per threshold set, in the given order. Unknown SLO names raise KeyError (scenario.py forbids them)."""
    out = []
    for name, limit in thresholds.items():
        if limit is None:
            continue
        fn, unit = SLOS[name]
        value, n, how = fn(turns)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append(SloResult(name, float(limit), None, False, n, unit,
                                 f"{name}: undefined ({how}) — fails, limit {_fmt(limit, unit)}"))
            continue
        passed = value <= limit
        rel = "≤" if passed else ">"
        out.append(SloResult(name, float(limit), float(value), passed, n, unit,
                             f"{name} = {_fmt(value, unit)} {rel} {_fmt(limit, unit)} ({how})"))
    return out


def _fmt(v: float, unit: str) -> str:
    if unit == "ms":
        return f"{v:.0f} ms" if abs(v) >= 100 else f"{v:.1f} ms"
    if unit == "":
        return f"{v:.3g}"
    return f"{v:.2f}{unit}"
