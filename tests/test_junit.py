"""JUnit XML: one test case per scenario × SLO and per regression check; failures carry the numbers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

from harness.suite import junit
from harness.suite.regress import Policy, compare
from harness.results.slo import evaluate
from harness.suite.nightly import Verdict


def frame(rng, n, tts=140.0, label="tonight"):
    tts_ms = rng.normal(tts, 10, n)
    return pd.DataFrame({"status": "ok", "tts_ttfb_ms": tts_ms, "endpointing_ms": rng.normal(200, 20, n),
                         "ttfa_ms": 600 + tts_ms + rng.normal(0, 20, n), "night": label,
                         "reply_duration_ms": 3000.0, "stutter_gaps": 0})


def verdicts() -> list[dict]:
    rng = np.random.default_rng(0)
    base = pd.concat([frame(rng, 6, label=f"2024-05-0{i}") for i in range(1, 8)])
    red_turns = frame(rng, 6, tts=290)
    red = Verdict("short", "short.yaml", status="red", elapsed_s=12.5,
                  slo=evaluate(red_turns, {"ttfa_p95_ms": 900, "no_response_rate": 0}),
                  comparison=compare(red_turns, base, scenario="short", night="2024-05-08",
                                     policy=Policy(n_boot=100)))
    green_turns = frame(rng, 6)
    green = Verdict("long", "long.yaml", status="green", elapsed_s=3.0,
                    slo=evaluate(green_turns, {"ttfa_p95_ms": 900}),
                    comparison=compare(green_turns, base.iloc[:12], scenario="long", night="2024-05-08",
                                       policy=Policy(n_boot=100)))
    err = Verdict("barge-in", "barge-in.yaml", status="error", elapsed_s=1.0,
                  error="agent at http://127.0.0.1:1/api/offer refused the connection")
    # through JSON, as the suite writes them (NaN/inf → null)
    return json.loads(json.dumps([v.to_dict() for v in (red, green, err)]))


def test_structure_counts_and_numbers(tmp_path):
    path = junit.write(verdicts(), tmp_path / "out" / "junit.xml", name="vlh suite 2024-05-08",
                       properties={"night": "2024-05-08"})
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = {ts.get("name"): ts for ts in root.findall("testsuite")}
    assert list(suites) == ["short", "long", "barge-in"]
    for ts in suites.values():  # the counts on each suite are the counts of its cases
        cases = ts.findall("testcase")
        assert int(ts.get("tests")) == len(cases)
        assert int(ts.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(ts.get("errors")) == sum(c.find("error") is not None for c in cases)
        assert int(ts.get("skipped")) == sum(c.find("skipped") is not None for c in cases)
    assert int(root.get("tests")) == sum(int(ts.get("tests")) for ts in suites.values())

    short = {c.get("name"): c for c in suites["short"].findall("testcase")}
    assert {"run", "slo ttfa_p95_ms", "slo no_response_rate", "regression ttfa_ms", "regression tts_ttfb_ms",
            "regression endpointing_ms"} <= set(short)
    assert short["run"].get("classname") == "vlh.suite.short" and short["run"].get("time") == "12.500"
    f = short["slo ttfa_p95_ms"].find("failure")
    assert f is not None and f.get("type") == "slo"
    assert "ttfa_p95_ms =" in f.get("message") and "> 900 ms" in f.get("message") and "limit: 900" in f.text
    assert short["slo no_response_rate"].find("failure") is None
    tts = short["regression tts_ttfb_ms"].find("failure")
    assert tts is not None and tts.get("type") == "regression"
    msg = tts.get("message")
    assert "TTS regressed" in msg and "p50 " in msg and "Mann–Whitney p=" in msg and "vs 7 nights" in msg
    assert "stage that moved: TTS" in msg and "\n" not in msg
    assert "baseline: n=42" in tts.text and "p95 shift" in tts.text
    assert short["regression endpointing_ms"].find("failure") is None

    long = {c.get("name"): c for c in suites["long"].findall("testcase")}
    sk = long["regression ttfa_ms"].find("skipped")
    assert sk is not None and "2 earlier night(s)" in sk.get("message")

    bi = suites["barge-in"].findall("testcase")
    assert [c.get("name") for c in bi] == ["run"]
    assert "refused the connection" in bi[0].find("error").get("message")
    assert suites["barge-in"].find("properties/property").get("value") == "2024-05-08"


def test_empty_suite_is_valid_xml(tmp_path):
    root = ET.parse(junit.write([], tmp_path / "j.xml")).getroot()
    assert root.get("tests") == "0" and root.findall("testsuite") == []
