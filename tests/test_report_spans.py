"""harness.report.spans: stages_json of every turn → one spans table; arrow and plain-JSON paths agree."""

import json

import numpy as np
import pandas as pd
import pytest

from harness.report import spans
from harness.testing.synthetic import make_run


@pytest.fixture(scope="module")
def raws(tmp_path_factory):
    d = make_run(tmp_path_factory.mktemp("sp") / "r", turns=40, calls=2, recordings="none", unattributed_every=3,
                 anomaly_every=7, no_response_every=9, payload=True)
    return pd.read_parquet(d / "turns.parquet")["stages_json"].fillna("").tolist()


def test_fast_and_plain_paths_agree(raws):
    fast, probs = spans.parse(raws)
    plain, probs2 = spans._python(raws, [str(i) for i in range(len(raws))])
    assert probs == probs2 == []
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), plain.reset_index(drop=True), check_dtype=False)
    n = sum(len(json.loads(r)) for r in raws if r)
    assert len(fast) == n and list(fast.columns) == spans.COLUMNS
    assert (np.diff(fast["row"]) >= 0).all()


def test_keys_kinds_and_defaults():
    raw = json.dumps([
        {"name": "endpointing", "start_mono": 1.0, "ms": 10, "source": "measured", "covers": ["endpointing"],
         "kind": "stage"},
        {"name": "stt…llm_ttft (unattributed)", "start_mono": None, "ms": 20.5, "covers": ["stt", "llm_ttft"]},
        {"name": "residual", "start_mono": 1.1, "ms": -2.0, "source": "reconciled", "covers": ["llm_dispatch"]},
        {"name": "residual", "start_mono": 1.2, "ms": 1.0, "source": "measured", "covers": []},
    ], indent=2)  # newlines inside: still one turn
    df, probs = spans.parse(["", raw])
    assert probs == [] and df["row"].tolist() == [1, 1, 1, 1]
    assert df["kind"].tolist() == ["stage", "unattributed", "residual", "residual"]
    assert df["key"].tolist() == ["endpointing", "stt…llm_ttft (unattributed)",
                                  "residual (llm_dispatch…llm_dispatch)", "residual"]
    assert df["source"].tolist()[1] == "missing" and np.isnan(df["start_mono"].iloc[1])
    assert df["ms"].tolist() == [10.0, 20.5, -2.0, 1.0]


@pytest.mark.parametrize("bad, why", [
    ("[{not json", "stages_json unreadable"),
    ('{"name": "x"}', "expected a JSON list"),
    ('[{"ms": 3.0}]', "stages_json unreadable ('name')"),
    ('[{"name": "stt", "ms": "slow"}]', "could not convert string to float"),
])
def test_bad_turns_are_named_and_the_rest_kept(raws, bad, why):
    good = next(r for r in raws if r)
    df, probs = spans.parse([good, bad, good], ["call 1 turn 1", "call 1 turn 2", "call 1 turn 3"])
    assert len(probs) == 1 and probs[0].startswith("call 1 turn 2: ") and why in probs[0]
    assert sorted(set(df["row"])) == [0, 2]
    assert spans.of_turn(df, 2)[0]["name"] == json.loads(good)[0]["name"]
