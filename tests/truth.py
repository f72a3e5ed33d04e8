"""Test helper: match vlh's turn rows with the reference agent's ground-truth log."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def load_truth(path: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "turn":
            out[(rec["call"], rec["turn"])] = rec
    return out


def matched(run_dir: Path) -> list[tuple[dict, dict]]:
    """[(row, truth)] for every ok turn, matched by the agent's call id and turn number."""
    df = pd.read_parquet(run_dir / "turns.parquet")
    truth = load_truth(run_dir / "agent-truth.jsonl")
    pairs = []
    for row in df.to_dict("records"):
        key = (row["agent_call_id"], row["turn"])
        assert key in truth, f"no truth for {key}; truth has {sorted(truth)[:5]}"
        pairs.append((row, truth[key]))
    return pairs
