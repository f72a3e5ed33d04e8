"""Which plotly.js the report inlines: the basic bundle when it can draw every trace, else the full one.

The report's charts are `scatter` and `bar` traces only, so the page carries the plotly.js *basic* bundle
(vendor/plotly-basic.min.js, ≈ 1.2 MB; same plotly.js version as the full bundle the plotly package ships, 4.8 MB)
— Chromium parses and evaluates a quarter of the script before the first chart can be drawn. The trace types the
basic bundle registers are read from the bundle itself (every trace module declares `moduleType:"trace",name:"…"`);
a page whose figures (built in Python) or report.js (traces built in the page) use any other type gets the full
bundle instead, so a new chart type can never silently disappear (plotly hides traces of an unregistered type).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

from harness.errors import VlhError

BASIC_FILE = "plotly-basic.min.js"
_TRACE_MODULE = re.compile(r'moduleType:"trace",name:"(\w+)"')
_JS_TRACE = re.compile(r'data\.push\(\{type: "(\w+)"')
_VERSION = re.compile(r"\A/\*\*\s*\*\s*plotly\.js (?:\(basic - minified\) )?v(\d+\.\d+\.\d+)")


@lru_cache(maxsize=1)
def basic_js() -> str:
    """The vendored basic bundle's text (license header included)."""
    try:
        return (files("harness.report") / "vendor" / BASIC_FILE).read_text(encoding="utf-8")
    except OSError as exc:
        raise VlhError(f"harness/report/vendor/{BASIC_FILE} cannot be read ({exc}); reinstall vlh") from None


@lru_cache(maxsize=1)
def full_js() -> str:
    """The full plotly.js bundle the plotly package inlines (every trace type)."""
    import plotly.offline

    return plotly.offline.get_plotlyjs()


def bundle_version(js: str) -> str | None:
    """The plotly.js version in a bundle's license header ("4.1.1"), None if it has none."""
    m = _VERSION.match(js)
    return m.group(1) if m else None


def registered_trace_types(js: str) -> frozenset[str]:
    """Trace types a plotly.js bundle registers, read from its trace modules; fails if none are found."""
    found = frozenset(_TRACE_MODULE.findall(js))
    if "scatter" not in found:
        raise VlhError("cannot read the trace types of the plotly.js bundle (no scatter module found); "
                       "refresh harness/report/vendor/ as its README says")
    return found


@lru_cache(maxsize=1)
def basic_trace_types() -> frozenset[str]:
    return registered_trace_types(basic_js())


def figure_trace_types(figures: dict) -> set[str]:
    """Trace types of the figures (name → {"data": [...], "layout": ...}); plotly's default type is scatter."""
    return {t.get("type", "scatter") for fig in figures.values() if fig for t in fig.get("data", [])}


def page_trace_types(report_js: str) -> set[str]:
    """Trace types report.js builds in the page (every `data.push({type: "…"` in it)."""
    return set(_JS_TRACE.findall(report_js))


def choose(types: set[str]) -> tuple[str, str]:
    """("basic" | "full", bundle text): the basic bundle if it registers every type in `types`."""
    if set(types) <= basic_trace_types():
        return "basic", basic_js()
    return "full", full_js()
