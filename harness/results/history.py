"""The suite history: every night's turns and run summaries, as a Parquet dataset pandas can query.

Layout (hive partitions, so ``pd.read_parquet(PATH / "turns")`` works and yields ``scenario`` and ``night``)::

    PATH/history.json                                      format, schema_version, created_by
    PATH/turns/scenario=<name>/night=<YYYY-MM-DD>/<entry>.parquet   one row per turn (docs/schema.md turn columns + entry, suite_id)
    PATH/runs/scenario=<name>/night=<YYYY-MM-DD>/<entry>.parquet    one row per run (summary, flags, SLO verdicts)

``entry`` = ``<suite_id>.<scenario>`` identifies a run in the history (a run folder's own ``run_id`` need not be
unique across nights: it is kept as it is).

Every file carries ``vlh_history_schema`` in its Parquet metadata. A history written by another schema version is
migrated on read when a migration exists, else refused with a message naming the path and the versions — never
silently mis-compared. Turn files are written with one fixed column set and types (docs/schema.md order), so a plain
``pd.read_parquet`` over the dataset sees every column of every night.

A run's summary row is written with ``suite_partial=True`` and flipped when the suite finishes
(``mark_suite_complete``): a suite killed halfway leaves its finished scenarios in the history, marked partial.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness import __version__
from harness.errors import VlhError
from harness.results.schema import TURN_COLUMNS
from harness.results.stats import percentile

HISTORY_SCHEMA = 1
FORMAT = "vlh-history"
META_KEY = b"vlh_history_schema"
NIGHT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: migrations of a table read from an older schema: {from_version: fn(df, table) -> df at from_version + 1}
MIGRATIONS: dict[int, Callable[[pd.DataFrame, str], pd.DataFrame]] = {}

_STR = pa.string()
_F64 = pa.float64()
_I64 = pa.int64()
_TURN_TYPES: dict[str, pa.DataType] = {}
for _c in TURN_COLUMNS:
    if _c == "scenario":
        continue  # the partition supplies it
    if _c in ("call", "turn", "stutter_gaps", "underruns"):
        _TURN_TYPES[_c] = _I64
    elif _c == "provider_ttft_invisible":
        _TURN_TYPES[_c] = pa.bool_()
    elif _c.endswith(("_ms", "_mono", "_s", "_ppm")):
        _TURN_TYPES[_c] = _F64
    else:
        _TURN_TYPES[_c] = _STR
_TURN_TYPES["entry"] = _STR
_TURN_TYPES["suite_id"] = _STR

RUN_TYPES: dict[str, pa.DataType] = {
    "entry": _STR, "run_id": _STR, "suite_id": _STR, "recorded_utc": _STR, "vlh_version": _STR, "fingerprint": _STR,
    "target": _STR, "transport": _STR, "run_dir": _STR, "calls": _I64, "n_turns": _I64, "n_ok": _I64,
    "n_no_response": _I64, "n_error": _I64, "n_unreliable": _I64, "ttfa_p50_ms": _F64, "ttfa_p95_ms": _F64, "run_partial": pa.bool_(),
    "suite_partial": pa.bool_(), "slo_ok": pa.bool_(), "slo_json": _STR,
}


def check_night(night: str) -> str:
    """`night` as YYYY-MM-DD, or a VlhError saying what is allowed."""
    if not isinstance(night, str) or not NIGHT_RE.match(night):
        raise VlhError(f"night {night!r}: expected a date as YYYY-MM-DD, e.g. 2024-05-01")
    try:
        _dt.date.fromisoformat(night)
    except ValueError:
        raise VlhError(f"night {night!r}: not a calendar date (YYYY-MM-DD)") from None
    return night


def tonight(now: _dt.datetime | None = None) -> str:
    """The night a suite starting `now` belongs to: the UTC date of its start."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).date().isoformat()


@dataclass
class Baseline:
    """The earlier nights a scenario is compared with: their turns, which nights, and what was left out and why."""

    turns: pd.DataFrame
    nights: list[str]
    entries: list[str]
    notes: list[str] = field(default_factory=list)


class History:
    """A history directory. Opening checks its schema version before anything is run or written."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        self.meta_file = self.path / "history.json"
        self._written: dict[str, list[Path]] = {}
        self._runs_cache: dict[str | None, pd.DataFrame] = {}
        if self.path.exists() and not self.path.is_dir():
            raise VlhError(f"history {self.path}: is a file, not a history directory; give a directory with --history")
        if self.meta_file.is_file():
            self.meta = self._read_meta()
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise VlhError(f"history {self.path}: this directory is not a vlh history (no history.json); "
                           "give an empty or new directory with --history")
        elif create:
            self.path.mkdir(parents=True, exist_ok=True)
            self.meta = {"format": FORMAT, "schema_version": HISTORY_SCHEMA, "created_by": f"vlh {__version__}",
                         "created_utc": _utcnow()}
            _atomic_write_text(self.meta_file, json.dumps(self.meta, indent=1))
        else:
            raise VlhError(f"history {self.path}: does not exist")

    # -- versions -----------------------------------------------------------------------------------------------
    def _read_meta(self) -> dict:
        try:
            meta = json.loads(self.meta_file.read_text())
        except (OSError, ValueError) as exc:
            raise VlhError(f"history {self.meta_file}: unreadable ({exc}); restore it or start a new --history") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("schema_version"), int):
            raise VlhError(f"history {self.meta_file}: not a vlh history file (expected format {FORMAT!r} and an "
                           "integer schema_version)")
        _check_version(meta["schema_version"], f"history {self.path}", meta.get("created_by", "an unknown vlh"))
        return meta

    # -- writing ------------------------------------------------------------------------------------------------
    def append_run(self, run_dir: str | Path, *, scenario: str, night: str, suite_id: str, fingerprint: str,
                   target: str, slo: list[dict] | None = None, n_unreliable: int = 0) -> dict:
        """Add one run folder (run.json + turns.parquet) to the history; returns its summary row.

        The row is marked ``suite_partial`` until `mark_suite_complete(suite_id)`. `n_unreliable`: answered turns
        the harness could not time (``regress.unreliable``); over half of them keeps the run out of baselines.
        """
        check_night(night)
        run_dir = Path(run_dir)
        run, turns = read_run_folder(run_dir)
        run_id = str(run["run_id"])
        entry = f"{suite_id}.{scenario}"
        if self._has_entry(entry):
            raise VlhError(f"history {self.path}: scenario {scenario} of suite {suite_id} is already in the history "
                           f"(adding {run_dir})")
        turns = turns.copy()
        turns["entry"] = entry
        turns["suite_id"] = suite_id
        statuses = turns["status"].astype(str)
        ok = turns.loc[statuses == "ok", "ttfa_ms"].astype(float).dropna()
        slo = list(slo or [])
        row = {
            "entry": entry, "run_id": run_id, "suite_id": suite_id, "recorded_utc": _utcnow(),
            "vlh_version": str(run.get("vlh_version", "")), "fingerprint": fingerprint, "target": target,
            "transport": str(run.get("transport", "")), "run_dir": str(run_dir.resolve()),
            "calls": int(run.get("calls") or 0), "n_turns": int(len(turns)), "n_ok": int((statuses == "ok").sum()),
            "n_no_response": int((statuses == "no_response").sum()),
            "n_error": int(statuses.str.startswith("error").sum()), "n_unreliable": int(n_unreliable),
            "ttfa_p50_ms": percentile(ok, 50) if len(ok) else np.nan,
            "ttfa_p95_ms": percentile(ok, 95) if len(ok) else np.nan,
            "run_partial": bool(run.get("partial", False)), "suite_partial": True,
            "slo_ok": all(bool(s.get("passed")) for s in slo), "slo_json": json.dumps(slo, default=_json_default),
        }
        part = f"scenario={scenario}/night={night}"
        self._write(self.path / "turns" / part / f"{entry}.parquet", _turn_table(turns))
        run_file = self.path / "runs" / part / f"{entry}.parquet"
        self._write(run_file, _table(pd.DataFrame([row]), RUN_TYPES))
        self._written.setdefault(suite_id, []).append(run_file)
        return row

    def mark_suite_complete(self, suite_id: str) -> int:
        """Clear ``suite_partial`` on every run of `suite_id`; returns how many rows were rewritten."""
        n = 0
        files = self._written.get(suite_id) or sorted((self.path / "runs").glob("scenario=*/night=*/*.parquet"))
        for f in files:
            df = self._read_file(f, "runs")
            hit = df["suite_id"].astype(str) == suite_id
            if hit.any():
                df.loc[hit, "suite_partial"] = False
                self._write(f, _table(df, RUN_TYPES))
                n += int(hit.sum())
        return n

    def _write(self, path: Path, table: pa.Table) -> None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: str(HISTORY_SCHEMA).encode()})
        self._runs_cache.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # a killed suite leaves whole files or none
        if self.meta.get("schema_version") != HISTORY_SCHEMA:  # an older history, now holding newer files
            self.meta = {**self.meta, "schema_version": HISTORY_SCHEMA, "created_by": f"vlh {__version__}"}
            _atomic_write_text(self.meta_file, json.dumps(self.meta, indent=1))

    # -- reading ------------------------------------------------------------------------------------------------
    def runs(self, scenario: str | None = None) -> pd.DataFrame:
        """One row per run: the summary columns plus ``scenario`` and ``night``; oldest first."""
        if scenario not in self._runs_cache:
            df = self._read_table("runs", scenario)
            if df.empty:
                df = pd.DataFrame(columns=["scenario", "night", *RUN_TYPES])
            else:
                df = df.sort_values(["night", "recorded_utc"], kind="stable").reset_index(drop=True)
            self._runs_cache[scenario] = df
        return self._runs_cache[scenario].copy()

    def turns(self, scenario: str | None = None, nights: list[str] | None = None,
              entries: list[str] | None = None) -> pd.DataFrame:
        """Turn rows (docs/schema.md columns + ``suite_id``, ``scenario``, ``night``), with ``suite_partial`` joined in."""
        df = self._read_table("turns", scenario, nights)
        if df.empty:
            return pd.DataFrame(columns=["scenario", "night", *_TURN_TYPES])
        if entries is not None:
            df = df[df["entry"].astype(str).isin(set(entries))]
        runs = self.runs(scenario)
        if not runs.empty:
            flags = runs.set_index("entry")["suite_partial"]
            df = df.assign(suite_partial=df["entry"].map(flags))
        return df.reset_index(drop=True)

    def baseline(self, scenario: str, before_night: str, n: int, fingerprint: str | None = None) -> Baseline:
        """The last `n` nights before `before_night` with a usable run of `scenario` (latest run of each night).

        Left out, each with a note: runs that were themselves incomplete (``run_partial``), runs the harness could not
        time (over half their answered turns ``n_unreliable``), and runs of a different stimulus (``fingerprint``),
        which would compare unlike with unlike.
        """
        check_night(before_night)
        runs = self.runs(scenario)
        notes: list[str] = []
        if runs.empty:
            return Baseline(pd.DataFrame(), [], [], ["no earlier nights in the history"])
        runs = runs[runs["night"].astype(str) < before_night]
        bad = runs["run_partial"].astype(bool)
        if bad.any():
            notes.append(f"{int(bad.sum())} incomplete run(s) left out (nights {', '.join(sorted(set(runs.loc[bad, 'night'].astype(str))))})")
        runs = runs[~bad]
        starved = pd.to_numeric(runs["n_unreliable"], errors="coerce").fillna(0) * 2 > runs["n_ok"].astype(float)
        if starved.any():
            notes.append(f"{int(starved.sum())} run(s) timed by a starved harness left out (nights "
                         f"{', '.join(sorted(set(runs.loc[starved, 'night'].astype(str))))})")
        runs = runs[~starved]
        if fingerprint is not None:
            other = runs["fingerprint"].astype(str) != fingerprint
            if other.any():
                notes.append(f"{int(other.sum())} run(s) of a different version of the scenario left out "
                             f"(turns/repetitions changed; nights {', '.join(sorted(set(runs.loc[other, 'night'].astype(str))))})")
            runs = runs[~other]
        latest = runs.sort_values("recorded_utc", kind="stable").groupby("night", observed=True).tail(1)
        latest = latest.sort_values("night").tail(max(int(n), 0))
        nights = [str(x) for x in latest["night"]]
        entries = [str(x) for x in latest["entry"]]
        if not nights:
            notes.append("no earlier nights in the history")
            return Baseline(pd.DataFrame(), [], [], notes)
        if latest["suite_partial"].astype(bool).any():
            p = latest.loc[latest["suite_partial"].astype(bool), "night"].astype(str)
            notes.append(f"nights from an interrupted suite used (their scenario finished): {', '.join(p)}")
        versions = sorted(set(latest["vlh_version"].astype(str)) - {__version__, ""})
        if versions:
            notes.append(f"baseline measured with vlh {', '.join(versions)}; tonight with vlh {__version__}")
        turns = self.turns(scenario, nights=nights, entries=entries)
        return Baseline(turns, nights, entries, notes)

    def trend(self, scenario: str) -> pd.DataFrame:
        """Per night (latest complete run): ``night``, ``ttfa_p50_ms``, ``ttfa_p95_ms``, ``n_ok``, ``slo_ok``, ``entry``."""
        runs = self.runs(scenario)
        if runs.empty:
            return pd.DataFrame(columns=["night", "ttfa_p50_ms", "ttfa_p95_ms", "n_ok", "slo_ok", "entry"])
        runs = runs[~runs["run_partial"].astype(bool)]
        latest = runs.sort_values("recorded_utc", kind="stable").groupby("night", observed=True).tail(1)
        cols = ["night", "ttfa_p50_ms", "ttfa_p95_ms", "n_ok", "slo_ok", "entry"]
        return latest.sort_values("night")[cols].assign(night=lambda d: d["night"].astype(str)).reset_index(drop=True)

    def _has_entry(self, entry: str) -> bool:
        return any((self.path / "runs").glob(f"scenario=*/night=*/{glob_escape(entry)}.parquet"))

    def _read_table(self, table: str, scenario: str | None, nights: list[str] | None = None) -> pd.DataFrame:
        base = self.path / table
        pattern = f"scenario={glob_escape(scenario) if scenario else '*'}/night=*/*.parquet"
        frames = []
        wanted = set(nights) if nights is not None else None
        for f in sorted(base.glob(pattern)):
            sc, night = f.parent.parent.name.split("=", 1)[1], f.parent.name.split("=", 1)[1]
            if wanted is not None and night not in wanted:
                continue
            df = self._read_file(f, table)
            df.insert(0, "night", night)
            df.insert(0, "scenario", sc)
            frames.append(df)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True, sort=False)

    def _read_file(self, f: Path, table: str) -> pd.DataFrame:
        try:
            t = pq.read_table(f, partitioning=None)
        except (OSError, pa.ArrowException) as exc:
            raise VlhError(f"history file {f}: unreadable ({exc}); move it out of the history") from None
        meta = t.schema.metadata or {}
        raw = meta.get(META_KEY)
        try:
            version = int(raw.decode()) if raw is not None else None
        except ValueError:
            version = None
        if version is None:
            raise VlhError(f"history file {f}: has no vlh_history_schema version; it was not written by vlh — move it out")
        _check_version(version, f"history file {f}", "an older vlh")
        df = t.to_pandas()
        for v in range(version, HISTORY_SCHEMA):
            df = MIGRATIONS[v](df, table)
        return df


# ----------------------------------------------------------------------------------------------------------------


def read_run_folder(run_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """run.json and turns.parquet of a run folder, checked for what the history needs."""
    run_dir = Path(run_dir)
    run_file, turns_file = run_dir / "run.json", run_dir / "turns.parquet"
    for f in (run_file, turns_file):
        if not f.is_file():
            raise VlhError(f"run folder {run_dir}: {f.name} is missing; it is not a complete vlh run folder")
    try:
        run = json.loads(run_file.read_text())
    except ValueError as exc:
        raise VlhError(f"{run_file}: not valid JSON ({exc})") from None
    if not isinstance(run, dict) or not run.get("run_id"):
        raise VlhError(f"{run_file}: no run_id; it is not a vlh run.json")
    turns = pd.read_parquet(turns_file)
    missing = [c for c in ("run_id", "call", "turn", "status", "ttfa_ms") if c not in turns.columns]
    if missing:
        raise VlhError(f"{turns_file}: columns missing: {', '.join(missing)} (see docs/schema.md)")
    return run, turns


def _turn_table(turns: pd.DataFrame) -> pa.Table:
    df = turns.drop(columns=[c for c in ("scenario", "night") if c in turns.columns])
    types = dict(_TURN_TYPES)
    for c in df.columns:  # columns a newer run writes: kept, typed by pyarrow
        types.setdefault(c, None)
    return _table(df, types)


def _table(df: pd.DataFrame, types: dict[str, pa.DataType | None]) -> pa.Table:
    arrays, fields = [], []
    for name, typ in types.items():
        if name in df.columns:
            col = df[name]
            if typ is None:
                arr = pa.array(col.tolist(), from_pandas=True)
            else:
                arr = pa.array(_clean(col, typ), type=typ, from_pandas=True)
        else:
            typ = typ or _STR
            arr = pa.nulls(len(df), type=typ)
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _clean(col: pd.Series, typ: pa.DataType) -> list:
    vals = col.tolist()
    out = []
    for v in vals:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            out.append(None)
        elif pa.types.is_string(typ):
            out.append(str(v))
        elif pa.types.is_integer(typ):
            out.append(int(v))
        elif pa.types.is_floating(typ):
            out.append(float(v))
        elif pa.types.is_boolean(typ):
            out.append(bool(v))
        else:
            out.append(v)
    return out


def _check_version(version: int, what: str, writer: str) -> None:
    if version == HISTORY_SCHEMA:
        return
    if version > HISTORY_SCHEMA:
        raise VlhError(f"{what}: written by a newer vlh ({writer}, history schema {version}); this vlh {__version__} "
                       f"reads schema {HISTORY_SCHEMA} and older: upgrade vlh, or use another --history")
    if all(v in MIGRATIONS for v in range(version, HISTORY_SCHEMA)):
        return
    raise VlhError(f"{what}: history schema {version} (written by {writer}) cannot be read by vlh {__version__} "
                   f"(schema {HISTORY_SCHEMA}); keep it for reference and start a new history with --history NEW_DIR")


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def new_suite_id(night: str) -> str:
    return f"{night}-{_dt.datetime.now(_dt.timezone.utc).strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if np.isnan(o) else float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return str(o)
