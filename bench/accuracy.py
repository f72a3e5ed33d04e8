"""Accuracy sweep: vlh against the reference agent's ground truth over a grid of conditions (issue 8.1).

For each condition: a short `vlh run` against the reference agent with that profile/overrides, then
harness.measure.verify.errors() → |measured − truth| of the ear-level instants, of every agent-reported stage, and of the
clock offset. Goals: ear boundaries p99 ≤ 2 ms, stages p99 ≤ 5 ms.

    .venv/bin/python bench/accuracy.py                 # the whole grid, 4 turns per condition
    .venv/bin/python bench/accuracy.py --quick         # one condition, one turn (the test suite's smoke run)
    .venv/bin/python bench/accuracy.py --update-readme # also write the table into bench/README.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_avg, machine, today, update_section  # noqa: E402

from harness.measure.runner import RunConfig, run_measurement  # noqa: E402
from harness.measure.verify import errors  # noqa: E402

TEXTS = ["What time is it now?", "Book a table for two.", "How far is the airport?", "Is the museum open today?"]
REPLIES = {"response": ["Sure thing.", "It is done.", "Twelve miles."]}
GRID = [
    ("typical", "typical", {}),
    ("LLM TTFT 100 ms", "typical", {"llm_ttft_ms": 100}),
    ("LLM TTFT 2000 ms", "typical", {"llm_ttft_ms": 2000}),
    ("reasoning 800 ms", "reasoning", {}),
    ("TTS TTFB 50 ms", "typical", {"tts_ttfb_ms": 50}),
    ("TTS TTFB 400 ms", "typical", {"tts_ttfb_ms": 400}),
    ("network 150 ms each way", "typical", {"net_delay_ms": 150, "in_delay_ms": 150}),
    ("jitter 50 ± 40 ms", "typical", {"net_delay_ms": 50, "net_jitter_ms": 40}),
    ("loss 3 %", "typical", {"net_loss": 0.03}),
    ("clock +5 s, +200 ppm", "typical", {"clock_offset_ms": 5000, "clock_drift_ppm": 200}),
    ("clock −5 s, −200 ppm", "typical", {"clock_offset_ms": -5000, "clock_drift_ppm": -200}),
    ("all bad at once", "typical", {"llm_ttft_ms": 1200, "reasoning_ms": 800, "tts_ttfb_ms": 400,
                                    "net_delay_ms": 150, "net_jitter_ms": 40, "net_loss": 0.03,
                                    "clock_offset_ms": -5000, "clock_drift_ppm": 200}),
]
EAR = ["user_speech_end_ms", "first_audio_arrival_ms", "first_voiced_offset_ms"]
STAGES = ["endpointing_ms", "stt_ms", "llm_dispatch_ms", "llm_ttft_ms", "reasoning_ms", "aggregation_ms",
          "tts_ttfb_ms", "agent_output_ms", "transport_ms"]


def _q(values) -> tuple[float, float, float]:
    v = np.abs(np.asarray([x for x in values if x is not None and np.isfinite(x)], float))
    if not len(v):
        return (float("nan"),) * 3
    return float(np.percentile(v, 50)), float(np.percentile(v, 99)), float(v.max())


def run_condition(name, profile, overrides, turns, root: Path) -> dict:
    out = root / name.replace(" ", "_").replace("%", "pct").replace("±", "pm").replace("/", "_")
    cfg = RunConfig(agent_profile=profile, agent_overrides={**REPLIES, **overrides}, turns=turns, texts=TEXTS,
                    out_dir=out, report=False, progress=False, force=True)
    t0 = time.time()
    run_measurement(cfg)
    err = errors(out)
    df = pd.read_parquet(out / "turns.parquet")
    ear = [x for c in EAR if c in err for x in err[c]]
    stages = [x for c in STAGES if c in err for x in err[c]]
    flagged = int(df["anomalies"].fillna("").str.contains("harness").sum())
    return {"condition": name, "turns": len(df), "ok": int((df["status"] == "ok").sum()),
            "ear": _q(ear), "stages": _q(stages),
            "clock": _q(err["clock_offset_ms"]) if "clock_offset_ms" in err else (float("nan"),) * 3,
            "flagged": flagged, "seconds": time.time() - t0, "load": load_avg()}


def table(results: list[dict]) -> str:
    def f(t):
        return " / ".join("–" if not np.isfinite(x) else f"{x:.2f}" for x in t)

    lines = ["| condition | turns ok | ear boundaries p50 / p99 / max (ms) | stages p50 / p99 / max (ms) | "
             "clock offset p50 / p99 / max (ms) | turns flagged (harness starved) | load |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['condition']} | {r['ok']}/{r['turns']} | {f(r['ear'])} | {f(r['stages'])} | "
                     f"{f(r['clock'])} | {r['flagged']} | {r['load']} |")
    ear99 = max((r["ear"][1] for r in results if np.isfinite(r["ear"][1])), default=float("nan"))
    st99 = max((r["stages"][1] for r in results if np.isfinite(r["stages"][1])), default=float("nan"))
    lines.append("")
    lines.append(f"Goal ear boundaries p99 ≤ 2 ms: worst condition {ear99:.2f} ms — "
                 f"{'met' if ear99 <= 2 else 'NOT met'}. Goal stages p99 ≤ 5 ms: worst condition {st99:.2f} ms — "
                 f"{'met' if st99 <= 5 else 'NOT met'}.")
    missed = [r for r in results if not (r["ear"][1] <= 2 and (not np.isfinite(r["stages"][1]) or r["stages"][1] <= 5))]
    if missed:
        lines.append("Conditions that miss: " + "; ".join(
            f"{r['condition']} (ear p99 {r['ear'][1]:.2f} ms, stages p99 {r['stages'][1]:.2f} ms, "
            f"{r['flagged']} of {r['turns']} turns flagged as timed by a starved harness, load {r['load']})"
            for r in missed) + ".")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="one condition, one turn")
    ap.add_argument("--only", help="run only conditions whose name contains this")
    ap.add_argument("--out", help="keep the run folders here")
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args(argv)
    grid = GRID[:1] if args.quick else [g for g in GRID if not args.only or args.only in g[0]]
    turns = 1 if args.quick else args.turns
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vlh-accuracy-"))
    results = []
    for name, profile, overrides in grid:
        r = run_condition(name, profile, overrides, turns, root)
        print(f"{name}: ear {r['ear']}, stages {r['stages']}, clock {r['clock']} ({r['seconds']:.0f} s)",
              flush=True)
        results.append(r)
    text = table(results)
    print(text)
    if args.update_readme:
        from harness import __version__

        cmd = " ".join(["bench/accuracy.py"] + list(sys.argv[1:] if argv is None else argv))
        update_section("accuracy", f"## Accuracy against the reference agent's truth — `bench/accuracy.py`\n\n"
                                   f"Date: {today()}. Machine: {machine()}. vlh {__version__}. Command: "
                                   f"`.venv/bin/python {cmd}` ({turns} turns per condition). |error| = "
                                   f"|measured − truth| per turn (`harness.measure.verify.errors`); ear boundaries = end "
                                   f"of user speech, first reply packet's arrival, first voiced sample's place in "
                                   f"it; load = 1-minute load average (2 cores, shared).\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
