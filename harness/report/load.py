"""Reading and checking a run folder (docs/schema.md) for the report.

`load_run(path)` returns a `Run`: run.json as a dict, the turns as a DataFrame (sorted by call and turn, index
0..n-1), every turn's `stages_json` parsed into one spans table (`Run.spans`, `row` = the turn's index), the
reconciled events (or None) and a list of `problems` — things that do not
stop a report but that a reader must see (missing columns, stages that do not sum to the TTFA, unreadable events).
What makes a report impossible (not a run folder, unreadable run.json or turns) raises `VlhError` with one line
naming the file and what to do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import VlhError
from harness.report import spans
from harness.results.schema import CORE_COLUMNS, EVENT_COLUMNS, STAGES, TURN_COLUMNS

SUM_TOLERANCE_MS = 0.5  # stages + unattributed + residual must equal ttfa_ms; float rounding only
MAX_LISTED = 20  # problems of one kind listed one by one; the rest are counted


@dataclass
class Run:
    path: Path
    meta: dict
    turns: pd.DataFrame
    events: pd.DataFrame | None
    problems: list[str] = field(default_factory=list)
    recordings: dict[int, str] = field(default_factory=dict)
    spans: pd.DataFrame = field(default_factory=spans.empty)  # one row per span (harness.report.spans)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.path.name)

    @property
    def partial(self) -> bool:
        return bool(self.meta.get("partial"))

    @property
    def ok(self) -> pd.DataFrame:
        """The turns that got an answer (status `ok`) and have a TTFA."""
        t = self.turns
        return t[(t["status"] == "ok") & t["ttfa_ms"].notna()]

    def recording(self, call: int) -> Path:
        """The call's capture: the turns' `recording` column (inside the run folder), else recordings/call-<n>.wav."""
        rel = self.recordings.get(int(call))
        return self.path / rel if rel else self.path / "recordings" / f"call-{int(call)}.wav"


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "run.json").is_file()


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.exists():
        raise VlhError(f"{path}: no such folder; pass a run folder written by `vlh run` (reports/<timestamp>/)")
    if not path.is_dir():
        raise VlhError(f"{path}: not a folder; pass a run folder written by `vlh run` (reports/<timestamp>/)")
    meta = _read_meta(path / "run.json")
    problems: list[str] = []
    turns = _read_turns(path, meta, problems)
    who = [f"call {c} turn {n}" for c, n in zip(turns["call"].tolist(), turns["turn"].tolist())]
    sp, bad = spans.parse(turns["stages_json"].tolist(), who)
    _listed(problems, bad)
    events = _read_events(path / "events.parquet", problems)
    _check_sums(turns, sp, problems)
    return Run(path, meta, turns, events, problems, _recordings(path, turns, problems), sp)


def _recordings(path: Path, turns: pd.DataFrame, problems: list[str]) -> dict[int, str]:
    """call → recording path relative to the run folder, from the `recording` column (paths that leave the folder
    are ignored and reported)."""
    if "recording" not in turns.columns:
        return {}
    out: dict[int, str] = {}
    root = path.resolve()
    for call, rel in zip(turns["call"].tolist(), turns["recording"].tolist()):
        if call in out or not isinstance(rel, str) or not rel:
            continue
        if root not in (root / rel).resolve().parents:
            problems.append(f"call {call}: recording path {rel!r} points outside the run folder; ignored")
            continue
        out[call] = rel
    return out


def _read_meta(p: Path) -> dict:
    if not p.is_file():
        raise VlhError(f"{p.parent}: not a vlh run folder (no run.json); pass a folder written by `vlh run`")
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise VlhError(f"{p}: not UTF-8 text; restore the file or re-run `vlh run`") from None
    except json.JSONDecodeError as exc:
        raise VlhError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg}); "
                       "restore the file or re-run `vlh run`") from None
    if not isinstance(meta, dict):
        raise VlhError(f"{p}: expected a JSON object with run metadata, found {type(meta).__name__}")
    return meta


def _read_turns(path: Path, meta: dict, problems: list[str]) -> pd.DataFrame:
    pq, csv = path / "turns.parquet", path / "turns.csv"
    turns = None
    if pq.is_file():
        try:
            turns = pd.read_parquet(pq)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            if not csv.is_file():
                raise VlhError(f"{pq}: unreadable Parquet ({_short(exc)}); restore it or re-run `vlh run`") from None
            problems.append(f"{pq.name} is unreadable ({_short(exc)}); read {csv.name} instead")
    elif csv.is_file():
        problems.append(f"{pq.name} is missing; read {csv.name} instead")
    if turns is None and csv.is_file():
        try:
            turns = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        except Exception as exc:
            raise VlhError(f"{csv}: unreadable CSV ({_short(exc)}); restore it or re-run `vlh run`") from None
    if turns is None:
        state = meta.get("state")
        if state == "failed":
            problems.append("the run failed before any turn was written: " + str(meta.get("error") or "see run.json"))
        elif meta.get("partial") or state in ("running", "interrupted"):
            problems.append("the run was interrupted before any turn was written (no turns.parquet)")
        elif not (meta.get("summary") or {}).get("turns"):
            problems.append("the run holds no turn (run.json says 0 turns)")
        else:
            raise VlhError(f"{path}: run.json is there but turns.parquet is missing; re-run `vlh run` into a new "
                           "folder")
        turns = pd.DataFrame({c: pd.Series(dtype="float64") for c in TURN_COLUMNS})
        turns["status"] = turns["status"].astype(str)
    if len(turns) and "ttfa_ms" not in turns.columns and "status" in turns.columns \
            and not (turns["status"].astype(str) == "ok").any():
        turns["ttfa_ms"] = float("nan")  # every turn failed (e.g. error:connect rows): no time was measured
    missing_core = [c for c in CORE_COLUMNS if c not in turns.columns]
    if missing_core:
        raise VlhError(f"{pq if pq.is_file() else csv}: missing column(s) {', '.join(missing_core)}; "
                       "this is not a vlh turns table (see docs/schema.md)")
    missing = [c for c in TURN_COLUMNS if c not in turns.columns]
    if missing:
        problems.append(f"turns table lacks column(s) {', '.join(missing)}; the report shows what is there")
    return _normalise(turns, problems)


def _normalise(turns: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    t = turns.copy()
    text_cols = ["run_id", "scenario", "status", "error", "text", "anomalies", "stages_json", "overlapped_stage"] + [
        f"{s}_source" for s in STAGES]
    for c in text_cols:
        if c in t.columns:
            t[c] = _text(t[c])
        else:
            t[c] = pd.Series(["missing" if c.endswith("_source") else ""] * len(t), index=t.index, dtype=object)
    for c in t.columns:  # other text columns as plain objects too: filtering arrow strings is slow
        if c not in text_cols and pd.api.types.is_string_dtype(t[c].dtype) and t[c].dtype != object:
            t[c] = t[c].astype(object)
    num_cols = [c for c in TURN_COLUMNS if c not in text_cols and c not in ("provider_ttft_invisible",)]
    for c in num_cols:
        t[c] = pd.to_numeric(t[c], errors="coerce") if c in t.columns else float("nan")
    if "provider_ttft_invisible" in t.columns:
        col = t["provider_ttft_invisible"]
        t["provider_ttft_invisible"] = col.fillna(False).astype(bool) if col.dtype == bool else col.map(_truthy)
    else:
        t["provider_ttft_invisible"] = False
    bad_id = t["call"].isna() | t["turn"].isna()
    if bad_id.any():
        problems.append(f"{int(bad_id.sum())} row(s) without a call/turn number were left out")
        t = t[~bad_id]
    t["call"] = t["call"].astype(int)
    t["turn"] = t["turn"].astype(int)
    return t.sort_values(["call", "turn"], kind="stable").reset_index(drop=True)


def _text(col: pd.Series) -> pd.Series:
    """A text column as Python str objects, missing values as ""."""
    arr = col.to_numpy(dtype=object, na_value="")
    if not all(type(v) is str for v in arr):
        arr = [v if type(v) is str else str(v) for v in arr]
    return pd.Series(arr, index=col.index, dtype=object)


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


def _check_sums(t: pd.DataFrame, sp: pd.DataFrame, problems: list[str]) -> None:
    """Stages + unattributed + residual = ttfa_ms (docs/schema.md); and the spans of stages_json too."""
    ok = t[(t["status"] == "ok") & t["ttfa_ms"].notna()]
    if ok.empty:
        return
    bad: list[str] = []
    span_sum = sp.groupby("row")["ms"].sum().reindex(ok.index)  # NaN: the turn has no spans
    off = (span_sum - ok["ttfa_ms"]).abs() > SUM_TOLERANCE_MS
    for c, n, total, ttfa in zip(ok["call"][off], ok["turn"][off], span_sum[off], ok["ttfa_ms"][off]):
        bad.append(f"call {c} turn {n}: stages_json spans sum to {total:.1f} ms but ttfa_ms is {ttfa:.1f}")
    missing = ok.index[span_sum.isna()]
    for c, n in zip(ok.loc[missing, "call"], ok.loc[missing, "turn"]):
        bad.append(f"call {c} turn {n}: answered but stages_json holds no spans")
    cols = [f"{s}_ms" for s in STAGES] + ["unattributed_ms", "residual_ms"]
    col_sum = ok[cols].fillna(0.0).sum(axis=1)
    off = ((col_sum - ok["ttfa_ms"]).abs() > SUM_TOLERANCE_MS) & ok[cols].notna().any(axis=1)
    for c, n, total, ttfa in zip(ok["call"][off], ok["turn"][off], col_sum[off], ok["ttfa_ms"][off]):
        bad.append(f"call {c} turn {n}: stage columns + unattributed + residual sum to {total:.1f} ms "
                   f"but ttfa_ms is {ttfa:.1f}")
    _listed(problems, bad)


def _read_events(p: Path, problems: list[str]) -> pd.DataFrame | None:
    if not p.is_file():
        problems.append("no events.parquet: the reconciled telemetry events are not shown")
        return None
    try:
        ev = pd.read_parquet(p)
    except Exception as exc:
        problems.append(f"{p.name} unreadable ({_short(exc)}): the telemetry events are not shown")
        return None
    missing = [c for c in EVENT_COLUMNS if c not in ev.columns]
    if missing:
        problems.append(f"{p.name} lacks column(s) {', '.join(missing)}: the telemetry events are not shown")
        return None
    ev = ev.copy()
    for c in ("call", "turn", "t_mono", "uncertainty_ms"):
        ev[c] = pd.to_numeric(ev[c], errors="coerce")
    for c in ("name", "source", "raw"):
        ev[c] = _text(ev[c])
    ev = ev.dropna(subset=["call", "turn", "t_mono"])
    ev["call"] = ev["call"].astype(int)
    ev["turn"] = ev["turn"].astype(int)
    return ev.reset_index(drop=True)


def _listed(problems: list[str], items: list[str]) -> None:
    problems.extend(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        problems.append(f"… and {len(items) - MAX_LISTED} more like these")


def _short(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return s[:200]
