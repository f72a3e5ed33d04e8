"""The report of a real `vlh run` against the reference agent, opened in headless Chromium with the network off."""

import asyncio
import json

from harness.testing.browser import Chromium, check_report
from harness.measure.runner import RunConfig, run_measurement


def test_report_of_a_real_run(tmp_path):
    out = run_measurement(RunConfig(turns=3, texts=["What time is it now?", "Book a table for two."],
                                    agent_overrides={"response": ["Sure thing.", "It is done."]},
                                    out_dir=tmp_path / "run", progress=False))
    report = out / "report.html"
    assert report.exists()
    meta = json.loads((out / "run.json").read_text())

    async def look():
        async with Chromium() as browser:
            r = await check_report(browser, report, tmp_path / "real.png")
            r.pop("page")
            return r

    r = asyncio.run(look())
    assert r["ready"] is True
    assert r["errors"] == [] and r["foreign_requests"] == []
    assert r["xss"] == []
    s = r["screenshot"]
    assert s["distinct"] > 40 and s["dominant_share"] < 0.95, s
    for p in ("p50", "p95", "max"):
        value, text = r["metrics"][f"ttfa_{p}_ms"]
        assert float(value) == meta["summary"]["ttfa_ms"][p]
    assert int(r["metrics"]["turns_ok"][0]) == meta["summary"]["status_counts"].get("ok", 0)
    assert meta["run_id"] in r["text"] or "vlh report" in r["text"]
