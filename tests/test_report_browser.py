"""Reports opened in real headless Chromium with the network off: nothing fails, nothing is fetched, the headline
in the DOM equals run.json's, the page is drawn, agent-provided payloads never execute."""

import asyncio
import json
import os
from pathlib import Path

import pytest

from harness.report.plotly_bundle import basic_trace_types
from harness.testing.browser import Chromium, check_report
from harness.report.render import write_report
from harness.testing.synthetic import XSS, make_run

SHOTS = Path(os.environ.get("VLH_SCREENSHOTS", "/tmp/vlh-report-screenshots"))

CLICK_ROW = """(function () {
  var tr = document.querySelector('#turn-table tbody tr[data-row="%d"]'); tr.click(); return true; }())"""
AUDIO = """new Promise(function (ok) {
  var a = document.querySelector('.turn-card[data-why="worst"] audio');
  if (!a) { return ok(null); }
  if (a.readyState >= 1) { return ok(a.duration); }
  a.addEventListener('loadedmetadata', function () { ok(a.duration); });
  a.addEventListener('error', function () { ok(-1); });
})"""
# every drawn chart: the trace types asked for, and how many traces plotly could not draw (no module: its type
# is not registered in the inlined bundle, so plotly hides the trace); the types the inlined bundle registers
TRACES = """(function () {
  var charts = Array.prototype.map.call(document.querySelectorAll('.js-plotly-plot'), function (gd) {
    return {types: gd.data.map(function (t) { return t.type || 'scatter'; }),
            undrawn: gd._fullData.filter(function (t) { return !t._module; }).length}; });
  return {charts: charts, registered: Object.keys(Plotly.PlotSchema.get().traces).sort(),
          menu_buttons: document.querySelectorAll('#fig-ecdf .updatemenu-container .updatemenu-button').length,
          header: document.scripts[1].text.slice(0, 60)};
}())"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    single = make_run(d / "single", turns=14, calls=2, seed=9, payload=True, unattributed_every=4,
                      anomaly_every=3, reasoning_every=5, stutter_every=4, no_response_every=7, error_every=6,
                      overlap_every=2, slo={"ttfa_p95_ms": 900})
    write_report([single], single / "report.html")
    a = make_run(d / "a", turns=40, calls=2, seed=31, recordings="none")
    b = make_run(d / "b", turns=40, calls=2, seed=32, recordings="none", shift_ms={"tts_ttfb": 150})
    cmp_html = write_report([a, b], d / "compare.html")
    zero = make_run(d / "zero", turns=3, calls=1, zero_ok=True, partial=True, recordings="none")
    write_report([zero], zero / "report.html")
    bad, blank = tampered(zero / "report.html", d)
    SHOTS.mkdir(parents=True, exist_ok=True)

    async def run():
        out = {}
        async with Chromium() as browser:
            r = await check_report(browser, single / "report.html", SHOTS / "single.png")
            page = r.pop("page")
            data = json.loads(await page.evaluate("document.getElementById('vlh-data').textContent"))
            row = next(i for i, t in enumerate(data["turns"]["cols"]["text"]) if XSS[1] in t)
            await page.evaluate(CLICK_ROW % row)
            await page.wait_for("document.querySelector('#turn-detail .turn-fig .main-svg') !== null")
            r["detail_row"] = await page.evaluate("document.getElementById('turn-detail').getAttribute('data-row')")
            r["detail_text"] = await page.evaluate("document.getElementById('turn-detail').innerText")
            r["clicked_row"] = row
            await page.evaluate("document.getElementById('fig-waterfall').emit('plotly_click', {points: [{x: 1}]})")
            await page.wait_for("document.getElementById('turn-detail').getAttribute('data-row') === '%d'"
                                % data["groups"][0][0], timeout=20)
            cols = data["turns"]["cols"]
            for key, pick in (("negative", lambda i: (cols["residual"][i] or 0) < 0),
                              ("overlap", lambda i: bool(cols["ovl_stage"][i]))):
                i = next(i for i in range(len(cols["text"])) if pick(i))
                await page.evaluate(CLICK_ROW % i)
                await page.wait_for("document.getElementById('turn-detail').getAttribute('data-row') === '%d'" % i,
                                    timeout=20)
                r[f"{key}_text"] = await page.evaluate("document.getElementById('turn-detail').innerText")
                # bars drawn in the turn's figure: none negative
                r[f"{key}_bars"] = await page.evaluate(
                    "document.querySelector('#turn-detail .turn-fig').data.filter(function (t) {"
                    " return t.type === 'bar'; }).reduce(function (a, t) { return a.concat(t.x); }, [])")
            r["audio_duration"] = await page.evaluate(AUDIO, await_promise=True)
            r["worst_clip_s"] = data["turns"]["waves"][str(data["turns"]["featured"][0][1])]["duration_s"]
            r["turn_figs"] = await page.evaluate("document.querySelectorAll('.turn-card .main-svg').length")
            r["errors_after_clicks"] = page.console_errors()
            r["xss_after_clicks"] = await page.evaluate("(window.__xss || []).concat(window.__xss_img ? ['img'] : [])")
            r["foreign_after_clicks"] = page.foreign_requests()
            r["traces"] = await page.evaluate(TRACES)
            await page.screenshot(SHOTS / "single-full.png", full_page=True)
            out["single"] = r
            r = await check_report(browser, cmp_html, SHOTS / "compare.png")
            r["traces"] = await r["page"].evaluate(TRACES)
            await r.pop("page").screenshot(SHOTS / "compare-full.png", full_page=True)
            out["compare"] = r
            r = await check_report(browser, zero / "report.html", SHOTS / "zero.png")
            r.pop("page")
            out["zero"] = r
            for name, path in (("bad", bad), ("blank", blank)):
                r = await check_report(browser, path)
                r.pop("page")
                out[name] = r
        return out

    res = asyncio.run(run())
    res["single"]["run_json"] = json.loads((single / "run.json").read_text())
    res["compare"]["run_json"] = [json.loads((x / "run.json").read_text()) for x in (a, b)]
    return res


@pytest.mark.parametrize("name", ["single", "compare", "zero"])
def test_no_console_errors_no_network_drawn(results, name):
    r = results[name]
    assert r["ready"] is True
    assert r["errors"] == []
    assert r["foreign_requests"] == []
    s = r["screenshot"]
    assert s["width"] == 1400 and s["height"] == 1000
    assert s["distinct"] > 40 and s["dominant_share"] < 0.95, s  # not a blank or single-colour page


def test_headline_in_dom_equals_run_json(results):
    r, meta = results["single"], results["single"]["run_json"]
    m = r["metrics"]
    for metric, key in (("ttfa_ms", "ttfa"), ("provider_ttft_ms", "provider_ttft"), ("gap_ms", "gap")):
        for p in ("p50", "p90", "p95", "p99", "max"):
            value, text = m[f"{key}_{p}_ms"]
            assert float(value) == meta["summary"][metric][p]
            assert text == f"{meta['summary'][metric][p]:.0f} ms"
    counts = meta["summary"]["status_counts"]
    assert int(m["turns_ok"][0]) == counts["ok"] and int(m["turns_no_response"][0]) == counts["no_response"]
    assert int(m["turns_error"][0]) == sum(v for k, v in counts.items() if k.startswith("error"))


def test_comparison_headlines_and_verdict_in_dom(results):
    r = results["compare"]
    for i, meta in enumerate(r["run_json"]):
        assert float(r["metrics"][f"run{i}_ttfa_p50_ms"][0]) == meta["summary"]["ttfa_ms"]["p50"]
    assert "significant. The stage that moved: TTS" in r["text"]


def test_payloads_show_as_text_and_never_execute(results):
    r = results["single"]
    assert r["xss"] == [] and r["xss_after_clicks"] == [] and r["injected_elements"] == 0
    assert XSS[0] in r["text"]  # the text is visible, literally
    assert XSS[1] in r["detail_text"]
    assert r["errors_after_clicks"] == [] and r["foreign_after_clicks"] == []


def test_turn_detail_and_audio(results):
    r = results["single"]
    assert r["detail_row"] is not None and r["turn_figs"] >= 3
    assert r["audio_duration"] == pytest.approx(r["worst_clip_s"], abs=0.01)


def test_turn_detail_lists_a_negative_residual_and_draws_the_overlap(results):
    r = results["single"]
    assert "residual -12.0 ms (a negative duration: not drawn as a bar)" in r["negative_text"]
    assert r["negative_bars"] and all(x >= 0 for x in r["negative_bars"]) and all(x >= 0 for x in r["overlap_bars"])
    assert "turn detection ran" in r["overlap_text"] and "beside STT (overlapped, not summed)" in r["overlap_text"]


@pytest.mark.parametrize("name", ["single", "compare"])
def test_basic_plotly_bundle_draws_every_trace(results, name):
    """The page inlines the plotly.js basic bundle, which registers exactly the types plotly_bundle reads from it,
    and every trace of every chart (turn detail included) has its type registered and drawn."""
    t = results[name]["traces"]
    assert "plotly.js (basic - minified) v" in t["header"]
    assert set(t["registered"]) == basic_trace_types()
    assert len(t["charts"]) >= (5 if name == "single" else 2)
    for chart in t["charts"]:
        assert set(chart["types"]) <= set(t["registered"]) and chart["undrawn"] == 0, chart
    if name == "single":
        assert t["menu_buttons"] == 2  # the ECDF's "linear x" / "log x" (layout components drawn too)


def test_zero_ok_report_says_so(results):
    assert "No turn got an answer" in results["zero"]["text"] and "partial" in results["zero"]["text"]


def tampered(report: Path, d: Path) -> tuple[Path, Path]:
    """A report with escaping bypassed, its CSP removed, an external image and a console error; a blank page."""
    html = report.read_text()
    head, rest = html.split('<meta http-equiv="Content-Security-Policy"', 1)
    rest = rest.split(">", 1)[1]
    bad = (head + rest).replace("<main>", "<main>" + XSS[1] + '<img src="http://example.com/a.png">'
                                '<script>console.error("boom")</script>', 1)
    (d / "bad.html").write_text(bad)
    (d / "blank.html").write_text("<html><body><script>window.__vlhReady = true</script></body></html>")
    return d / "bad.html", d / "blank.html"


def test_the_checks_can_fail(results):
    """The tampered report and the blank page must trip every check the tests above rely on."""
    r, blank = results["bad"], results["blank"]
    assert "alert:2" in r["xss"] and "img onerror ran" in r["xss"]
    assert r["injected_elements"] >= 2
    assert any("boom" in e for e in r["errors"])
    assert r["foreign_requests"] == ["http://example.com/a.png"]
    assert blank["screenshot"]["distinct"] == 1 and blank["screenshot"]["dominant_share"] == 1


CHARTS = """JSON.stringify(Array.prototype.map.call(
  document.querySelectorAll('[data-figure], .turn-card:not(#turn-detail) .turn-fig'), function (e) {
    var r = e.getBoundingClientRect();
    return {name: e.getAttribute('data-figure') || e.closest('.turn-card').getAttribute('data-row'),
            top: r.top, bottom: r.bottom, drawn: !!e.querySelector('.main-svg')}; }))"""
# what a drawn chart holds: its traces as plotly kept them (the figure handed in), and whether each was drawn
HOLDS = """(function (e) { return JSON.stringify({data: e.data,
  undrawn: e._fullData.filter(function (t) { return !t._module; }).length}); })(%s)"""


def test_lazy_charts_draw_when_scrolled_to_and_before_print(tmp_path):
    """With idle-time drawing off (the hook __vlhLazyOnly), only the first screen is drawn; each chart below it is
    drawn when scrolled to, with the figure of the data (a featured turn's chart equals the one the turn detail
    draws for the same row); printing draws every chart left."""
    d = make_run(tmp_path / "r", turns=40, calls=4, seed=5, unattributed_every=4, overlap_every=3)
    report = write_report([d], d / "report.html")
    lazy = "window.__vlhLazyOnly = true;"

    async def run():
        out = {}
        async with Chromium() as browser:
            page = await browser.open(report, ready="window.__vlhFirstScreen === true", init_script=lazy)
            await asyncio.sleep(1.0)  # idle time in which nothing more may be drawn
            out["vh"] = await page.evaluate("window.innerHeight")
            out["before"] = json.loads(await page.evaluate(CHARTS))
            out["ready_before"] = await page.evaluate("window.__vlhReady === true")
            data = json.loads(await page.evaluate("document.getElementById('vlh-data').textContent"))
            out["figures"], out["held"] = data["figures"], {}
            for c in out["before"]:
                sel = (f"document.querySelector('[data-figure=\"{c['name']}\"]')" if not c["name"].isdigit() else
                       f"document.querySelector('.turn-card[data-row=\"{c['name']}\"] .turn-fig')")
                await page.evaluate(sel + ".scrollIntoView({block: 'center'})")
                await page.wait_for(sel + ".querySelector('.main-svg') !== null", timeout=20)
                out["held"][c["name"]] = json.loads(await page.evaluate(HOLDS % sel))
                if c["name"].isdigit():  # the same turn drawn by the detail view (not lazy)
                    await page.evaluate(f"window.vlhShowTurn({c['name']})")
                    await page.wait_for("document.getElementById('turn-detail').getAttribute('data-row') === '%s'"
                                        " && document.querySelector('#turn-detail .turn-fig .main-svg') !== null"
                                        % c["name"], timeout=20)
                    out["held"]["detail " + c["name"]] = json.loads(
                        await page.evaluate(HOLDS % "document.querySelector('#turn-detail .turn-fig')"))
            await page.wait_for("window.__vlhReady === true", timeout=20)
            out["errors"] = page.console_errors()
            await page.close()
            page = await browser.open(report, ready="window.__vlhFirstScreen === true", init_script=lazy)
            out["print_before"] = json.loads(await page.evaluate(CHARTS))
            pdf = await page.send("Page.printToPDF", {})
            out["pdf_bytes"] = len(pdf.get("data", ""))
            out["print_after"] = json.loads(await page.evaluate(CHARTS))
            out["print_errors"] = page.console_errors()
        return out

    r = asyncio.run(run())
    vh, before = r["vh"], r["before"]
    assert [c["drawn"] for c in before] == [c["top"] < vh and c["bottom"] > 0 for c in before], before
    assert any(c["drawn"] for c in before) and sum(not c["drawn"] for c in before) >= 3  # ECDF + turn cards wait
    assert r["ready_before"] is False
    for c in before:
        held = r["held"][c["name"]]
        assert held["undrawn"] == 0 and held["data"], c
        if c["name"].isdigit():
            assert held == r["held"]["detail " + c["name"]]
        else:
            assert held["data"] == r["figures"][c["name"]]["data"]
    assert r["errors"] == []
    assert sum(not c["drawn"] for c in r["print_before"]) >= 3
    assert all(c["drawn"] for c in r["print_after"]) and r["pdf_bytes"] > 1000
    assert r["print_errors"] == []
