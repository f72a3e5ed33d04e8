"""harness.report.render: one self-contained, escaped HTML file whose headline equals run.json's."""

import json
import re
from html.parser import HTMLParser

import pytest

from harness.errors import VlhError
from harness.report.render import write_report
from harness.testing.synthetic import XSS, make_run


class Scan(HTMLParser):
    """Collects data-metric values, tags with external references, and the JSON data block."""

    def __init__(self):
        super().__init__()
        self.metrics, self.attrs, self.external, self.tags = {}, [], [], []
        self._in_data, self.data = False, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs.append((tag, a))
        if "data-metric" in a:
            self.metrics[a["data-metric"]] = a.get("data-value")
        for k in ("src", "href"):
            v = a.get(k)
            if v and re.match(r"^[a-z]+:", v) and not v.startswith(("data:", "#")):
                self.external.append((tag, k, v))
        if tag == "link" or (tag == "script" and "src" in a):
            self.external.append((tag, "src", a.get("src") or a.get("href")))
        self._in_data = tag == "script" and a.get("id") == "vlh-data"

    def handle_endtag(self, tag):
        self._in_data = False

    def handle_data(self, d):
        if self._in_data:
            self.data += d


def scan(path):
    s = Scan()
    s.feed(path.read_text(encoding="utf-8"))
    return s


@pytest.fixture(scope="module")
def payload_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("render") / "r", turns=14, calls=2, seed=9, payload=True,
                    unattributed_every=4, anomaly_every=3, reasoning_every=5, stutter_every=4, no_response_every=7,
                    error_every=6, slo={"ttfa_p95_ms": 900, "ttfa_p50_ms": 2000})


@pytest.fixture(scope="module")
def payload_report(payload_run):
    return write_report([payload_run], payload_run / "report.html")


def test_headline_in_the_dom_equals_run_json(payload_run, payload_report):
    meta = json.loads((payload_run / "run.json").read_text())
    s = scan(payload_report)
    for metric, key in (("ttfa_ms", "ttfa"), ("provider_ttft_ms", "provider_ttft"), ("gap_ms", "gap")):
        for p in ("p50", "p90", "p95", "p99", "max"):
            assert float(s.metrics[f"{key}_{p}_ms"]) == meta["summary"][metric][p]
    counts = meta["summary"]["status_counts"]
    assert int(s.metrics["turns_ok"]) == counts["ok"] and int(s.metrics["turns_no_response"]) == counts["no_response"]
    assert int(s.metrics["turns_error"]) == sum(v for k, v in counts.items() if k.startswith("error"))
    assert int(s.metrics["anomalies"]) > 0 and int(s.metrics["invisible_ttft"]) > 0
    verdicts = {a["data-slo"]: a["data-verdict"] for _, a in s.attrs if "data-slo" in a}
    assert verdicts == {"ttfa_p95_ms": "fail", "ttfa_p50_ms": "pass"}


def test_self_contained(payload_report):
    s = scan(payload_report)
    assert s.external == []
    html = payload_report.read_text()
    assert "Content-Security-Policy" in html and "connect-src 'none'" in html
    assert html.count("<script") == 3  # data, plotly.js, report.js: nothing loaded from elsewhere
    assert 'src="http' not in html and "cdn.plot.ly" not in html.split('id="vlh-data"')[0]


def test_agent_text_is_escaped_everywhere(payload_report):
    html = payload_report.read_text()
    for x in XSS:
        assert x not in html  # never raw: &lt;… in markup, \u003c… in the JSON block
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    s = scan(payload_report)
    assert "img" not in s.tags and "iframe" not in s.tags
    assert all(not k.startswith("on") for _, a in s.attrs for k in a)
    data = json.loads(s.data)
    assert XSS[0] in data["turns"]["cols"]["text"][0] or XSS[1] in data["turns"]["cols"]["text"][0]
    assert any(XSS[1] in n for n in data["turns"]["names"])  # span name from the agent, raw for textContent


def test_turn_data_and_featured_sound(payload_run, payload_report):
    data = json.loads(scan(payload_report).data)
    T = data["turns"]
    assert len(T["cols"]["call"]) == 14
    whys = [w for w, _ in T["featured"]]
    assert whys[0] == "worst" and "median" in whys and whys[-1] == "best"
    for _, i in T["featured"]:
        w = T["waves"][str(i)]
        assert w["audio"].startswith("data:audio/wav;base64,") and w["recording"].startswith("recordings/call-")
        assert T["cols"]["ttfa"][i] is not None
    ok = [i for i, s in enumerate(T["cols"]["status"]) if s == "ok"]
    S, E = T["spans"], T["events"]
    assert all(S["off"][i + 1] > S["off"][i] for i in ok) and all(E["off"][i + 1] > E["off"][i] for i in ok)
    assert S["off"][-1] == len(S["k"]) == len(S["ms"]) == len(S["ds"]) and E["off"][-1] == len(E["n"]) == len(E["t"])
    assert max(abs(x) for x in S["ds"]) <= 0.05 * 14  # contiguous spans: only the rounding of the spans before
    i = ok[0]  # the spans of a turn add up to its TTFA (0.1 ms rounding each)
    assert sum(S["ms"][S["off"][i]:S["off"][i + 1]]) == pytest.approx(T["cols"]["ttfa"][i], abs=1.0)
    for _, i in T["featured"]:
        assert len(E["raw"][str(i)]) == E["off"][i + 1] - E["off"][i]
    assert data["figures"]["waterfall"]["data"] and data["figures"]["ecdf"]["data"]


def test_zero_ok_and_partial_runs_say_so(tmp_path):
    d = make_run(tmp_path / "z", turns=4, calls=1, zero_ok=True, partial=True, recordings="none")
    out = write_report([d], tmp_path / "z.html")
    html = out.read_text()
    assert 'data-banner="zero-ok"' in html and "No turn got an answer" in html
    assert 'data-banner="partial"' in html and "partial" in html
    s = scan(out)
    assert s.metrics["ttfa_p50_ms"] == "" and s.metrics["turns_no_response"] == "4"
    assert 'data-figure="waterfall"' not in html
    assert json.loads(s.data)["figures"] == {}


def test_comparison_report_names_the_stage(tmp_path):
    a = make_run(tmp_path / "a", turns=40, calls=2, seed=31, recordings="none")
    b = make_run(tmp_path / "b", turns=40, calls=2, seed=32, recordings="none", shift_ms={"tts_ttfb": 150})
    out = write_report([a, b], tmp_path / "cmp.html")
    s = scan(out)
    comp = next(attrs for _, attrs in s.attrs if attrs.get("data-compare") == "1")
    assert comp["data-significant"] == "true" and comp["data-moved"] == "tts_ttfb"
    html = out.read_text()
    assert "significant. The stage that moved: TTS" in html
    meta_a = json.loads((a / "run.json").read_text())
    assert float(s.metrics["run0_ttfa_p50_ms"]) == meta_a["summary"]["ttfa_ms"]["p50"]
    d = float(s.metrics["d_ttfa_p50_ms_1"])
    assert 100 < d < 200


def test_write_report_refuses_a_folder_and_writes_readable_files(tmp_path, payload_run):
    with pytest.raises(VlhError, match="is a folder"):
        write_report([payload_run], tmp_path)
    with pytest.raises(VlhError, match="no run folder given"):
        write_report([], tmp_path / "x.html")
    with pytest.raises(VlhError, match="not a vlh run folder"):
        write_report([tmp_path], tmp_path / "x.html")


def test_report_masks_secrets_in_a_hand_written_run_json(tmp_path):
    """Defence in depth: secrets a run.json should never have held are masked with the one REDACTED marker."""
    d = make_run(tmp_path / "s", turns=4, calls=1, seed=1, recordings="none")
    meta = json.loads((d / "run.json").read_text())
    meta["agent_url"] = "https://user:pw4711@agent.example/offer?token=tok4711&x=1"
    meta["config"] = {"headers": {"Authorization": "Bearer hdr4711"}, "api_key": "key4711", "turns": 4}
    (d / "run.json").write_text(json.dumps(meta))
    html = write_report([d], tmp_path / "r.html").read_text()
    for secret in ("pw4711", "tok4711", "hdr4711", "key4711", "***"):
        assert secret not in html
    assert "https://agent.example/offer?token=REDACTED&amp;x=REDACTED" in html


def test_run_json_without_summary_and_comparison_with_an_unanswered_run(tmp_path):
    a = make_run(tmp_path / "a", turns=6, calls=1, seed=1, recordings="none")
    meta = json.loads((a / "run.json").read_text())
    del meta["summary"]
    (a / "run.json").write_text(json.dumps(meta))
    html = write_report([a], tmp_path / "a.html").read_text()
    assert "Headline computed from the turns table (run.json has no summary)" in html
    assert 'data-banner="mismatch"' not in html
    z = make_run(tmp_path / "z", turns=3, calls=1, zero_ok=True, recordings="none")
    html = write_report([a, z], tmp_path / "az.html").read_text()
    assert "too few answered turns to compare" in html and 'data-banner="zero-ok"' in html


def test_summary_disagreement_is_a_banner(tmp_path):
    a = make_run(tmp_path / "a", turns=6, calls=1, seed=1, recordings="none")
    meta = json.loads((a / "run.json").read_text())
    meta["summary"]["ttfa_ms"]["p50"] += 40.0
    (a / "run.json").write_text(json.dumps(meta))
    out = write_report([a], tmp_path / "a.html")
    s = scan(out)
    assert float(s.metrics["ttfa_p50_ms"]) == meta["summary"]["ttfa_ms"]["p50"]  # run.json's number, flagged
    assert 'data-banner="mismatch"' in out.read_text() and "ttfa_ms p50" in out.read_text()


def test_comparison_escapes_agent_text(tmp_path):
    a = make_run(tmp_path / "a", turns=8, calls=1, seed=1, recordings="none", payload=True, unattributed_every=2)
    b = make_run(tmp_path / "b", turns=8, calls=1, seed=2, recordings="none", payload=True, anomaly_every=2)
    out = write_report([a, b], tmp_path / "c.html")
    html = out.read_text()
    assert all(x not in html for x in XSS)
    s = scan(out)
    assert "img" not in s.tags and all(not k.startswith("on") for _, a in s.attrs for k in a)
