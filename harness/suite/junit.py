"""JUnit XML for CI: one ``<testsuite>`` per scenario, one ``<testcase>`` per SLO and per regression check.

Written from the suite's verdict dicts (the ``scenarios`` of ``verdicts.json``), so a JUnit file can be rebuilt
from a verdicts file. Failures carry the numbers in their ``message`` (one line) and the full detail in the body.

- ``slo <name>``: failure when the SLO is breached (type ``slo``).
- ``regression <metric>``: failure when the metric regressed (type ``regression``); ``<skipped>`` when it could not
  be compared (too few nights or turns), with the reason.
- ``run``: present for every scenario; ``<error>`` when the harness or the agent failed (no verdict possible).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path


def build(verdicts: list[dict], *, name: str = "vlh suite", properties: dict | None = None) -> ET.Element:
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for v in verdicts:
        scenario = v["scenario"]
        ts = ET.SubElement(root, "testsuite", name=scenario)
        if properties:
            props = ET.SubElement(ts, "properties")
            for k, val in properties.items():
                ET.SubElement(props, "property", name=str(k), value=str(val))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        classname = f"vlh.suite.{scenario}"
        elapsed = float(v.get("elapsed_s") or 0.0)
        run = _case(ts, classname, "run", elapsed, counts)
        if v.get("error"):
            el = ET.SubElement(run, "error", message=_one_line(v["error"]), type="harness")
            el.text = v["error"]
            counts["errors"] += 1
        for s in v.get("slo") or []:
            case = _case(ts, classname, f"slo {s['name']}", 0.0, counts)
            if not s["passed"]:
                el = ET.SubElement(case, "failure", message=_one_line(s["detail"]), type="slo")
                el.text = (f"{s['detail']}\nvalue: {_num(s['value'])} {s['unit']}\nlimit: {_num(s['threshold'])} "
                           f"{s['unit']}\nsamples: {s['n']}")
                counts["failures"] += 1
        comp = v.get("comparison")
        if comp:
            for m in comp.get("metrics") or []:
                case = _case(ts, classname, f"regression {m['metric']}", 0.0, counts)
                if m["status"] == "regression":
                    el = ET.SubElement(case, "failure", message=_regression_message(m, comp), type="regression")
                    el.text = _regression_body(m, comp)
                    counts["failures"] += 1
                elif m["status"] == "skipped":
                    ET.SubElement(case, "skipped", message=_one_line(f"not compared: {m['note']}"))
                    counts["skipped"] += 1
                else:
                    out = ET.SubElement(case, "system-out")
                    out.text = _regression_body(m, comp)
        for k, n in counts.items():
            ts.set(k, str(n))
            totals[k] += n
        ts.set("time", f"{elapsed:.3f}")
        total_time += elapsed
    for k, n in totals.items():
        root.set(k, str(n))
    root.set("time", f"{total_time:.3f}")
    return root


def write(verdicts: list[dict], path: str | Path, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = ET.ElementTree(build(verdicts, **kw))
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def _case(ts: ET.Element, classname: str, name: str, t: float, counts: dict) -> ET.Element:
    counts["tests"] += 1
    return ET.SubElement(ts, "testcase", classname=classname, name=name, time=f"{t:.3f}")


def _regression_message(m: dict, comp: dict) -> str:
    stage = comp.get("moved_stage_label")
    moved = f"; stage that moved: {stage}" if stage else ""
    lo, hi = m["p50_shift_ci"]
    return _one_line(
        f"{m['label']} regressed: p50 {m['p50_baseline']:.1f} → {m['p50_tonight']:.1f} ms "
        f"({m['p50_shift_ms']:+.1f} ms, {_pct(m['p50_shift_pct'])}, 95% CI {lo:+.1f}…{hi:+.1f}), "
        f"p95 {m['p95_shift_ms']:+.1f} ms; Mann–Whitney p={m['p_value']:.2g} (Holm {m['p_adjusted']:.2g}) "
        f"vs {len(comp.get('baseline_nights') or [])} nights{moved}")


def _regression_body(m: dict, comp: dict) -> str:
    lines = [
        f"metric: {m['metric']} ({m['label']})",
        f"status: {m['status']}",
        f"tonight: n={m['n_tonight']} p50={_num(m['p50_tonight'])} ms p95={_num(m['p95_tonight'])} ms",
        f"baseline: n={m['n_baseline']} p50={_num(m['p50_baseline'])} ms p95={_num(m['p95_baseline'])} ms "
        f"(nights {', '.join(comp.get('baseline_nights') or [])})",
        f"p50 shift: {_num(m['p50_shift_ms'])} ms ({_pct(m['p50_shift_pct'])}), CI {_num(m['p50_shift_ci'][0])} … {_num(m['p50_shift_ci'][1])}",
        f"p95 shift: {_num(m['p95_shift_ms'])} ms, CI {_num(m['p95_shift_ci'][0])} … {_num(m['p95_shift_ci'][1])}",
        f"Mann–Whitney U={_num(m['u'])} one-sided p={_num(m['p_value'])} Holm-adjusted p={_num(m['p_adjusted'])}",
        f"policy: {comp.get('policy')}",
    ]
    if comp.get("moved_stage_label") and m["status"] == "regression":
        lines.append(f"stage that moved: {comp['moved_stage_label']}")
    lines += [f"note: {n}" for n in comp.get("notes") or []]
    return "\n".join(lines)


def _num(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def _pct(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a %"
    return f"{v:+.0f} %"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
