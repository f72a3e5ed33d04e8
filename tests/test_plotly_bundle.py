"""The report inlines the vendored plotly.js basic bundle; every trace type its figures and report.js use is one the
bundle registers, else the full bundle is inlined (a new chart type can never be silently hidden)."""

import hashlib
import re
from importlib.resources import files
from pathlib import Path

import pytest

from harness.report import plotly_bundle as pb
from harness.report.render import plotly_bundle_for, write_report
from harness.testing.synthetic import make_run

VENDOR = Path(pb.__file__).parent / "vendor"


def test_vendored_bundle_matches_its_readme_and_the_plotly_package():
    js = pb.basic_js()
    assert js.startswith("/**\n* plotly.js (basic - minified) v") and "Licensed under the MIT license" in js[:300]
    readme = (VENDOR / "README.md").read_text()
    sha = hashlib.sha256((VENDOR / pb.BASIC_FILE).read_bytes()).hexdigest()
    assert sha in readme, "vendor/README.md must give the bundle's SHA-256; refresh it as the README says"
    version = pb.bundle_version(js)
    assert version and f"plotly.js-basic-dist-min@{version}" in readme
    # figures are written against the plotly.js the plotly package ships; the basic bundle must be the same release
    assert version == pb.bundle_version(pb.full_js())


def test_trace_types_are_read_from_the_bundles():
    assert pb.basic_trace_types() == {"scatter", "bar", "pie"}
    full = pb.registered_trace_types(pb.full_js())
    assert pb.basic_trace_types() < full and {"heatmap", "histogram", "box", "scattergl"} <= full
    with pytest.raises(Exception, match="trace types"):
        pb.registered_trace_types("/** not plotly */ var x = 1;")


def test_basic_bundle_has_every_layout_component_of_the_full_one():
    """Shapes, annotations, error bars, legend, … (and updatemenus/sliders, declared without moduleType first)."""
    comp = re.compile(r'moduleType:"component",name:"(\w+)"')
    basic, full = pb.basic_js(), pb.full_js()
    assert set(comp.findall(basic)) == set(comp.findall(full)) >= {"shapes", "annotations", "errorbars", "legend"}
    for name in ("updatemenus", "sliders"):
        assert f'name:"{name}"' in basic


def test_every_trace_type_report_js_builds_is_found_and_in_the_basic_bundle():
    js = (files("harness.report") / "templates" / "report.js").read_text()
    found = pb.page_trace_types(js)
    # every trace report.js builds is pushed as `data.push({type: "…"`: a push written another way would escape
    # the check, so fail here and make it follow the pattern
    assert len(re.findall(r"data\.push\(", js)) == len(re.findall(r'data\.push\(\{type: "\w+"', js)) > 0
    assert found and found <= pb.basic_trace_types(), found


def test_a_figure_with_another_trace_type_gets_the_full_bundle():
    ok = {"a": {"data": [{"type": "bar"}, {"mode": "lines"}]}, "b": None}
    assert pb.figure_trace_types(ok) == {"bar", "scatter"}
    assert plotly_bundle_for(ok) == "basic"
    assert plotly_bundle_for({"a": {"data": [{"type": "heatmap"}]}}) == "full"
    name, js = pb.choose({"scatter", "heatmap"})
    assert name == "full" and js == pb.full_js()


def test_reports_inline_the_basic_bundle_and_use_only_its_types(tmp_path):
    """Single and compare reports with every figure present (synthetic runs, all turn kinds): basic bundle inline,
    the full one absent, every figure's trace type registered by it."""
    a = make_run(tmp_path / "a", turns=30, calls=2, seed=3, recordings="none", unattributed_every=4,
                 anomaly_every=3, overlap_every=2)
    b = make_run(tmp_path / "b", turns=30, calls=2, seed=4, recordings="none")
    basic = pb.basic_js()
    for runs, out in (([a], tmp_path / "single.html"), ([a, b], tmp_path / "compare.html")):
        html = write_report(runs, out).read_text()
        assert basic in html
        assert "* plotly.js v" not in html  # the full bundle's header
        assert len(html) < len(basic) + 3_000_000
