"""Every turn's `stages_json` → one table of spans (a row per span, in pipeline order within each turn).

Columns: `row` (the turn's position in the turns table), `name`, `start_mono`, `ms`, `source`, `kind`
(stage | unattributed | residual) and `key` (the waterfall trace the span belongs to, `schema.span_key`).
The fast path parses all turns at once with pyarrow's JSON reader (10 000 turns in a fraction of a second); if any
turn's JSON is malformed or of the wrong shape, every turn is parsed on its own so the bad ones can be named.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from harness.results.schema import span_key

COLUMNS = ["row", "name", "start_mono", "ms", "source", "kind", "key"]
_SPAN = pa.struct([("name", pa.string()), ("start_mono", pa.float64()), ("ms", pa.float64()),
                   ("source", pa.string()), ("covers", pa.list_(pa.string())), ("kind", pa.string())])
_SCHEMA = pa.schema([("s", pa.list_(_SPAN))])


def empty() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype=int), "name": pd.Series(dtype=object),
                         "start_mono": pd.Series(dtype=float), "ms": pd.Series(dtype=float),
                         "source": pd.Series(dtype=object), "kind": pd.Series(dtype=object),
                         "key": pd.Series(dtype=object)})


def parse(raws: list[str], who: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """(spans table, problems). `who[i]` names turn i in a problem ("call 2 turn 5")."""
    if not raws:
        return empty(), []
    try:
        return _arrow(raws), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        return _python(raws, who or [f"row {i}" for i in range(len(raws))])


def _arrow(raws: list[str]) -> pd.DataFrame:
    lines = [(r or "[]").replace("\n", " ").replace("\r", " ") for r in raws]  # JSON allows no raw newline in strings
    buf = "\n".join('{"s":' + r + "}" for r in lines).encode()
    tab = pj.read_json(io.BytesIO(buf), parse_options=pj.ParseOptions(explicit_schema=_SCHEMA,
                                                                      unexpected_field_behavior="ignore"))
    if tab.num_rows != len(raws):
        raise ValueError("row count changed")
    lists = tab.column("s").combine_chunks()
    if lists.null_count:
        raise ValueError("a turn's stages_json is not a list")
    vals = lists.flatten()
    if vals.field("name").null_count or vals.field("ms").null_count:
        raise ValueError("a span without name or ms")
    lengths = np.diff(lists.offsets.to_numpy())
    name = vals.field("name").to_numpy(zero_copy_only=False)
    kind = vals.field("kind").to_numpy(zero_copy_only=False)
    source = vals.field("source").to_numpy(zero_copy_only=False)
    covers = vals.field("covers")
    df = pd.DataFrame({
        "row": np.repeat(np.arange(len(raws)), lengths),
        "name": name,
        "start_mono": vals.field("start_mono").to_numpy(zero_copy_only=False).astype(float),
        "ms": vals.field("ms").to_numpy(zero_copy_only=False).astype(float),
        "source": np.where(pd.isna(source), "missing", source),
        "kind": _kinds(name, kind),
    })
    key = name.copy()
    res = np.flatnonzero(df["kind"].to_numpy() == "residual")
    if len(res):
        off = covers.offsets.to_numpy()
        flat = covers.flatten().to_numpy(zero_copy_only=False)
        valid = ~covers.is_null().to_numpy(zero_copy_only=False)
        for i in res.tolist():
            c = flat[off[i]:off[i + 1]].tolist() if valid[i] else []
            key[i] = span_key({"name": name[i], "kind": "residual", "covers": c})
    df["key"] = key
    return df


def _kinds(name: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """The given kind, else inferred from the name (residual / … (unattributed) / stage)."""
    out = kind.copy()
    missing = pd.isna(kind)
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            n = name[i]
            out[i] = "residual" if n == "residual" else "unattributed" if "unattributed" in n else "stage"
    return out


def _python(raws: list[str], who: list[str]) -> tuple[pd.DataFrame, list[str]]:
    rows, problems = [], []
    for i, raw in enumerate(raws):
        if not raw:
            continue
        try:
            items = json.loads(raw)
            if not isinstance(items, list):
                raise TypeError(f"expected a JSON list, found {type(items).__name__}")
            spans = [_span(x) for x in items]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(f"{who[i]}: stages_json unreadable ({msg[:200]})")
            continue
        rows.extend({"row": i, **sp} for sp in spans)
    if not rows:
        return empty(), problems
    return pd.DataFrame(rows)[COLUMNS], problems


def _span(x: dict) -> dict:
    if not isinstance(x, dict):
        raise TypeError(f"a span must be a JSON object, found {type(x).__name__}")
    covers = x.get("covers") or []
    if isinstance(covers, str):
        covers = [covers]
    name = str(x["name"])
    start = x.get("start_mono")
    kind = x.get("kind") or ("residual" if name == "residual" else "unattributed" if "unattributed" in name
                             else "stage")
    sp = {"name": name, "start_mono": float("nan") if start is None else float(start), "ms": float(x["ms"]),
          "source": str(x.get("source") or "missing"), "kind": str(kind), "covers": [str(c) for c in covers]}
    sp["key"] = span_key(sp)
    del sp["covers"]
    return sp


def of_turn(spans: pd.DataFrame, row: int) -> list[dict]:
    """The spans of one turn as dicts, in order."""
    return spans[spans["row"] == row].drop(columns="row").to_dict("records")
