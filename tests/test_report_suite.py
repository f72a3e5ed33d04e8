"""The suite report (`vlh suite` → <suite>/report.html, `vlh report SUITE_DIR`), opened in real headless Chromium
with the network off: it loads without errors, and what it shows — tonight's headline per scenario, the trend over
the nights in the history, the SLO verdicts and the regressions naming the stage that moved — are the numbers of
verdicts.json (themselves checked against the run folders' turns)."""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main as cli_main
from harness.testing.browser import Chromium, check_report
from harness.report.render import write_report
from harness.testing.synthetic import XSS, make_run
from harness.suite.nightly import RunRequest, run_suite

SHOTS = Path(os.environ.get("VLH_SCREENSHOTS", "/tmp/vlh-report-screenshots"))
SCENARIOS = {
    "short": "name: short\nturns:\n  - say: \"What time is it?\"\nrepetitions: 8\n"
             "slo:\n  ttfa_p50_ms: 5000\n  ttfa_p95_ms: 5000\n  no_response_rate: 0\n",
    "tight": "name: tight\nturns:\n  - say: \"Where is the station?\"\nrepetitions: 8\n"
             "slo:\n  ttfa_p95_ms: 300\n",  # breached every night: red, with its number
    "crash": "name: crash\nturns:\n  - say: \"Hello?\"\nrepetitions: 6\n",
}
NIGHTS = [f"2024-05-{i:02d}" for i in range(1, 7)]  # 5 unchanged nights, then TTS +150 ms


class Runner:
    """Schema-true synthetic run folders (seeded per scenario and night); `crash` scenarios raise with an HTML
    payload in the message; the last night writes each run's own report.html (the suite report links to it)."""

    def __init__(self, shift_ms=None, reports=False):
        self.shift_ms, self.reports = shift_ms or {}, reports

    def __call__(self, req: RunRequest) -> Path:
        if req.scenario.name == "crash":
            raise ConnectionRefusedError(f"agent said {XSS[1]} and hung up")
        seed = zlib.crc32(f"{req.scenario.name}|{req.night}".encode())
        out = make_run(req.out_dir, turns=len(req.scenario.turns) * req.scenario.repetitions, calls=1, seed=seed,
                       shift_ms=self.shift_ms, recordings="none")
        if self.reports:
            write_report([out], out / "report.html")
        return out


async def _each(page, selector: str, expr: str) -> list:
    """`expr` (JavaScript, the element is `e`) for every element matching `selector`, as Python values."""
    return json.loads(await page.evaluate(
        f"JSON.stringify(Array.from(document.querySelectorAll({json.dumps(selector)})).map(function (e) {{"
        f" return {expr}; }}))"))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("suite-report")
    scen = d / "scenarios"
    scen.mkdir()
    for name, text in SCENARIOS.items():
        (scen / f"{name}.yaml").write_text(text)
    for night in NIGHTS[:-1]:
        run_suite(scen, history=d / "hist", out_dir=d / "out", night=night, runner=Runner(), baseline=7)
    last = run_suite(scen, history=d / "hist", out_dir=d / "out", night=NIGHTS[-1], baseline=7,
                     runner=Runner(shift_ms={"tts_ttfb": 150}, reports=True))
    doc = json.loads(last.verdicts_path.read_text())
    by = {s["scenario"]: s for s in doc["scenarios"]}
    # the CLI rewrites the same page from the folder (and to another file)
    again = d / "elsewhere" / "suite.html"
    assert cli_main(["report", str(last.suite_dir), "-o", str(again)]) == 0
    SHOTS.mkdir(parents=True, exist_ok=True)

    async def open_all():
        out = {}
        async with Chromium() as browser:
            for key, path in (("suite", last.suite_dir / "report.html"), ("again", again)):
                r = await check_report(browser, path, SHOTS / f"suite-{key}.png")
                page = r.pop("page")
                r["trend_x"] = await _each(page, ".fig.trend", "[e.closest('section').getAttribute('data-scenario'), "
                                           "e.data[0].x, e.data[0].y, e.data[1].y, e.querySelectorAll('.main-svg').length]")
                r["links"] = await _each(page, "a.run-link", "[e.closest('tr').getAttribute('data-scenario'), "
                                         "e.getAttribute('href'), decodeURIComponent(e.href)]")
                r["slo_rows"] = await _each(page, "tr[data-slo]", "[e.getAttribute('data-slo'), "
                                            "e.getAttribute('data-verdict'), getComputedStyle(e.cells[4]).color]")
                r["status"] = await _each(page, "section.scenario", "[e.getAttribute('data-scenario'), "
                                          "e.getAttribute('data-status'), e.getAttribute('data-moved-stage')]")
                if key == "suite":
                    await page.screenshot(SHOTS / "suite-full.png", full_page=True)
                out[key] = r
        return out

    pages = asyncio.run(open_all())
    return {"dir": d, "result": last, "doc": doc, "by": by, "pages": pages, "again": again}


@pytest.mark.parametrize("key", ["suite", "again"])
def test_loads_offline_without_errors_and_is_drawn(suite, key):
    r = suite["pages"][key]
    assert r["ready"] is True and r["errors"] == [] and r["foreign_requests"] == []
    assert r["xss"] == [] and r["injected_elements"] == 0
    assert XSS[1] in r["text"]  # the crashing runner's message is shown as text, never run
    s = r["screenshot"]
    assert s["distinct"] > 40 and s["dominant_share"] < 0.95, s


def test_verdict_numbers_are_the_runs_numbers(suite):
    """verdicts.json's headline figures are the percentiles of the run folder's answered turns."""
    for name in ("short", "tight"):
        sc = suite["by"][name]
        turns = pd.read_parquet(Path(sc["run_dir"]) / "turns.parquet")
        ok = turns[turns["status"] == "ok"]
        for col in ("ttfa", "provider_ttft"):
            for q in (50, 95):
                assert sc["numbers"][f"{col}_p{q}_ms"] == pytest.approx(np.percentile(ok[f"{col}_ms"], q), abs=1e-9)
        assert sc["numbers"]["n_ok"] == len(ok) == 8


@pytest.mark.parametrize("key", ["suite", "again"])
def test_headline_slo_and_regression_numbers_in_the_dom_equal_verdicts_json(suite, key):
    m, doc, by = suite["pages"][key]["metrics"], suite["doc"], suite["by"]
    assert m["exit_code"][0] == str(doc["exit_code"]) == "2"  # the crash wins over red
    for name in ("short", "tight"):
        n = by[name]["numbers"]
        for k in ("ttfa_p50_ms", "ttfa_p95_ms", "provider_ttft_p50_ms", "provider_ttft_p95_ms"):
            for prefix in (f"{name}.", f"{name}.head."):
                value, text = m[prefix + k]
                assert float(value) == n[k] and text == f"{n[k]:.0f}"
        assert int(m[f"{name}.n_ok"][0]) == n["n_ok"]
        for s in by[name]["slo"]:
            value, text = m[f"{name}.slo.{s['name']}"]
            assert float(value) == s["value"]
            assert float(m[f"{name}.slo.{s['name']}.limit"][0]) == s["threshold"]
        comp = by[name]["comparison"]
        assert comp["regressed"] and comp["moved_stage"] == "tts_ttfb"
        for reg in (x for x in comp["metrics"] if x["status"] == "regression"):
            base = f"{name}.regression.{reg['metric']}"
            assert float(m[f"{base}.p50_shift_ms"][0]) == reg["p50_shift_ms"]
            assert m[f"{base}.p50_shift_ms"][1] == f"{reg['p50_shift_ms']:.1f}"
            assert float(m[f"{base}.p50_shift_ci_lo"][0]) == reg["p50_shift_ci"][0]
            assert float(m[f"{base}.p50_shift_ci_hi"][0]) == reg["p50_shift_ci"][1]
            assert float(m[f"{base}.p95_shift_ms"][0]) == reg["p95_shift_ms"]
        tts = next(x for x in comp["metrics"] if x["metric"] == "tts_ttfb_ms")
        assert tts["status"] == "regression" and 100 < tts["p50_shift_ms"] < 200
    text = suite["pages"][key]["text"]
    assert text.count("The stage that moved: TTS") == 2


def test_slo_verdicts_are_green_and_red(suite):
    rows = {k: (v, color) for k, v, color in suite["pages"]["suite"]["slo_rows"]}
    by = suite["by"]
    want = {f"{n}.{s['name']}": ("pass" if s["passed"] else "fail") for n in ("short", "tight") for s in by[n]["slo"]}
    assert {k: v for k, (v, _) in rows.items()} == want
    assert want["tight.ttfa_p95_ms"] == "fail" and want["short.ttfa_p95_ms"] == "pass"
    assert rows["tight.ttfa_p95_ms"][1] == "rgb(179, 38, 30)"  # --bad
    assert rows["short.ttfa_p95_ms"][1] == "rgb(27, 127, 59)"  # --good
    status = {s: (st, moved) for s, st, moved in suite["pages"]["suite"]["status"]}
    assert status == {"crash": ("error", ""), "short": ("red", "tts_ttfb"), "tight": ("red", "tts_ttfb")}


@pytest.mark.parametrize("key", ["suite", "again"])
def test_trend_shows_every_night_of_the_history(suite, key):
    from harness.results.history import History

    trends = {name: rest for name, *rest in suite["pages"][key]["trend_x"]}
    assert set(trends) == {"short", "tight"}  # crash never reached the history
    h = History(suite["dir"] / "hist")
    for name, (x, p50, p95, svgs) in trends.items():
        tr = h.trend(name)
        assert x == NIGHTS and svgs >= 1
        assert p50 == pytest.approx(tr["ttfa_p50_ms"].round(1).tolist(), abs=1e-9)
        assert p95 == pytest.approx(tr["ttfa_p95_ms"].round(1).tolist(), abs=1e-9)
        assert p50[-1] > max(p50[:-1])  # tonight's TTS +150 ms is visible


@pytest.mark.parametrize("key", ["suite", "again"])
def test_links_to_each_run_report_are_relative_and_resolve(suite, key):
    links = suite["pages"][key]["links"]
    assert sorted(name for name, _, _ in links) == ["short", "tight"]
    for name, href, absolute in links:
        assert not href.startswith(("/", "file:")) and href.endswith(f"runs/{name}/report.html")
        target = Path(absolute.removeprefix("file://"))
        assert target.is_file() and target.resolve() == (Path(suite["by"][name]["run_dir"]) / "report.html").resolve()


def test_partial_suite_and_missing_history_say_so(suite, tmp_path):
    from harness.report.suite import write_suite_report

    scen = tmp_path / "sc"
    scen.mkdir()
    for name in ("short", "tight"):
        (scen / f"{name}.yaml").write_text(SCENARIOS[name])

    def interrupt_on_tight(req):
        if req.scenario.name == "tight":
            raise KeyboardInterrupt
        return Runner()(req)

    with pytest.raises(KeyboardInterrupt):
        run_suite(scen, history=tmp_path / "h", out_dir=tmp_path / "o", night=NIGHTS[0], runner=interrupt_on_tight)
    folder = next((tmp_path / "o").iterdir())
    html = (folder / "report.html").read_text()
    assert 'data-banner="partial"' in html and "not run: tight" in html and 'data-scenario="short"' in html
    # the history moved away: the page still renders, without a trend, and says why
    (tmp_path / "h").rename(tmp_path / "h-moved")
    html = write_suite_report(folder, tmp_path / "r.html").read_text()
    assert 'data-banner="no-trend"' in html and "does not exist" in html


def test_report_command_bad_suite_folder(tmp_path, capsys):
    d = tmp_path / "s"
    d.mkdir()
    (d / "verdicts.json").write_text("{not json")
    assert cli_main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert "verdicts.json: not valid JSON" in err
    (d / "verdicts.json").write_text(json.dumps({"scenarios": []}))
    run_dir = make_run(tmp_path / "run", turns=3, calls=1, recordings="none")
    assert cli_main(["report", str(d), str(run_dir)]) == 2
    assert "is a suite folder" in capsys.readouterr().err
