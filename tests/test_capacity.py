"""Capacity verdicts: order-statistic bounds and Clopper–Pearson bounds checked against their definitions by
simulation (not against the code's own formulas), and the capacity sentence."""

import numpy as np
import pandas as pd

from harness.results.capacity import capacity_statement, quantile_upper_bound, rate_upper_bound, step_verdict


def test_quantile_upper_bound_covers_the_true_p95_at_least_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_p95 = float(np.exp(np.log(800) + 0.3 * 1.6448536))  # lognormal(ln 800, 0.3)
    hits = [quantile_upper_bound(rng.lognormal(np.log(800), 0.3, 200), 95) >= true_p95 for _ in range(2000)]
    assert 0.95 <= np.mean(hits) <= 0.985  # conservative (discrete), not absurdly so


def test_too_few_turns_give_no_p95_bound():
    assert quantile_upper_bound(list(range(58)), 95) is None  # 1 − 0.95^58 < 0.95
    assert quantile_upper_bound(list(range(59)), 95) == 58.0  # the maximum is the bound


def test_rate_upper_bound_covers_the_true_rate():
    rng = np.random.default_rng(2)
    hits = [rate_upper_bound(int(rng.binomial(100, 0.03)), 100) >= 0.03 for _ in range(3000)]
    assert np.mean(hits) >= 0.95
    assert abs(rate_upper_bound(0, 100) - (1 - 0.05 ** (1 / 100))) < 1e-9  # the rule of three, exactly


def _turns(ttfa, no_resp=0):
    rows = [{"status": "ok", "ttfa_ms": t} for t in ttfa] + [{"status": "no_response", "ttfa_ms": None}] * no_resp
    return pd.DataFrame(rows)


def test_capacity_is_the_last_level_before_a_break():
    slo = {"ttfa_p95_ms": 1500, "no_response_rate": 0.05}
    steps = [step_verdict(_turns([1000] * 80), slo, 1), step_verdict(_turns([1100] * 80), slo, 2),
             step_verdict(_turns([1000] * 40 + [2000] * 40), slo, 4), step_verdict(_turns([900] * 80), slo, 8)]
    cap = capacity_statement(steps)
    assert cap["capacity"] == 2 and cap["broke_at"] == 4 and cap["confident"]
    assert "capacity: 2 concurrent calls" in cap["statement"] and "at 4 calls broke ttfa_p95_ms" in cap["statement"]


def test_few_turns_meet_but_not_confidently():
    steps = [step_verdict(_turns([1000] * 10), {"ttfa_p95_ms": 1500}, 3)]
    cap = capacity_statement(steps)
    assert cap["capacity"] == 3 and not cap["confident"] and "Not confident" in cap["statement"]
    assert capacity_statement([step_verdict(_turns([3000] * 10), {"ttfa_p95_ms": 1500}, 1)])["capacity"] is None
