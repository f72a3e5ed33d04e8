"""Soak: many turns over one long call and over many short calls (issue 8.5).

Both modes run `harness.measure.runner.run_call` (what `vlh run` does per call) in this process, against one reference agent
(`vlh agent`, its own process) with short utterances and the reply "Okay.", and check:
- **memory**: this process's RSS after every turn (and, for short calls, after every wave of calls has closed and
  been analysed); least-squares slope in KB per turn, over all turns and over the second half. In the long call
  the capture (two float32 channels, 384 KB per second of call, held in memory until the call ends) grows by
  design, so the slope of RSS minus the capture's samples is given too — that is what would show a leak;
- **no turn lost**: every planned turn has a row, is `ok`, and matches a turn of the agent's truth log;
- **no drift**: the signed ear-boundary errors vs truth (`harness.measure.verify.errors`) against the turn index,
  least-squares slope in ms per 1000 turns, plus p50 / p99 / max of |error|.

    .venv/bin/python bench/soak.py                     # 1000 turns in one call, then 1000 turns in calls of 10
    .venv/bin/python bench/soak.py --turns 200 --mode short --concurrent 5
    .venv/bin/python bench/soak.py --quick             # smoke: 4 turns each way (the test suite)
    .venv/bin/python bench/soak.py --estimate          # print the expected runtime and stop
    .venv/bin/python bench/soak.py --update-readme     # also write the table into bench/README.md
    .venv/bin/python bench/soak.py --minutes 1 5 20 60 --update-readme   # RSS vs call length: one call of each
                                                       # length, each in a fresh process (issue 19.3)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import signal
import sys
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import load_avg, machine, today, update_section  # noqa: E402
from scale import EAR, EAR_TOL_MS, RssSampler, rss_mb  # noqa: E402

from harness import __version__  # noqa: E402

TEXTS = ["Okay?", "Is it open?", "Thanks.", "How far?", "Right now?"]
REPLY = "Okay."
PAUSE_S = 0.3  # after the reply's end (silence detected) before the next utterance
REPLY_END_SILENCE_S = 0.5
EXPECTED_TTFA_S = 0.9  # typical profile: hangover 200 + STT 100 + LLM 350 + aggregation + TTS 120 + network 20
FLAT_MB_PER_1000 = 10.0  # "memory stays flat": at most this many MB of growth per 1000 turns (beyond the capture)
DRIFT_MS_PER_1000 = 0.5  # "no growing drift": |slope of the ear-boundary error| per 1000 turns


def slope(x, y) -> float:
    """Least-squares slope dy/dx (nan with fewer than 3 points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return math.nan
    return float(np.polyfit(x[ok], y[ok], 1)[0])


class _Calls:
    """Every live WebRTCCall of this process (to read how many capture samples it holds)."""

    live: "weakref.WeakSet" = weakref.WeakSet()

    @classmethod
    def install(cls) -> None:
        import harness.transports.webrtc.client as w

        if getattr(w.WebRTCCall, "_soak_tracked", False):
            return
        base = w.WebRTCCall

        class Tracked(base):
            _soak_tracked = True

            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                cls.live.add(self)

        w.WebRTCCall = Tracked

    @classmethod
    def capture_mb(cls) -> float:
        # samples held in RAM (the rest of a long call is on disk)
        return sum(c.timeline.resident_bytes for c in list(cls.live)) / 2**20


def utterances(n: int, timeout_s: float = 10.0):
    """n turns cycling through TEXTS; each text synthesised once."""
    from harness.audio.synth import synthesize
    from harness.measure.runner import Utterance, crisp

    cache = {t: crisp(synthesize(t)) for t in TEXTS}
    return [Utterance(TEXTS[i % len(TEXTS)], cache[TEXTS[i % len(TEXTS)]], PAUSE_S, timeout_s) for i in range(n)]


def estimate_s(mode: str, turns: int, per_call: int, concurrent: int) -> float:
    """Expected wall time of one mode: per turn the utterance, the agent's latency, the reply, the end-of-reply
    silence and the pause; per call the connection and lead-in."""
    from harness.audio.synth import synthesize
    from harness.measure.runner import crisp

    utts = utterances(min(turns, len(TEXTS)))
    speak = float(np.mean([len(u.samples) / 48000 for u in utts]))
    reply = len(crisp(synthesize(REPLY))) / 48000
    per_turn = speak + EXPECTED_TTFA_S + reply + REPLY_END_SILENCE_S + PAUSE_S + 0.1
    if mode == "long":
        return turns * per_turn + 2.0
    calls = math.ceil(turns / per_call)
    waves = math.ceil(calls / concurrent)
    return waves * (per_call * per_turn + 2.5)


def run_mode(mode: str, turns: int, per_call: int, concurrent: int, root: Path, profile: str) -> dict:
    from harness.devices.priority import set_nice
    from harness.measure.runner import ReferenceAgent, RunConfig, run_call
    from harness.results.store import RunStore
    from harness.measure.verify import errors, load_truth
    import pandas as pd

    _Calls.install()
    set_nice(-10)
    run_dir = root / mode
    if mode == "long":
        plan = [turns]
    else:
        plan = [per_call] * (turns // per_call) + ([turns % per_call] if turns % per_call else [])
    waves = [list(range(i + 1, min(i + concurrent, len(plan)) + 1)) for i in range(0, len(plan), concurrent)]
    store = RunStore(run_dir, {"transport": "webrtc", "scenario": f"bench-soak-{mode}", "calls": len(plan),
                               "config": {"turns": turns, "calls": len(plan), "concurrent": concurrent}}, force=True)
    cfg = RunConfig(agent_profile=profile, turns=turns, calls=len(plan), report=False, progress=False,
                    reply_end_silence_s=REPLY_END_SILENCE_S)
    utts = utterances(max(plan))
    agent = ReferenceAgent(profile, {"response": REPLY}, [], run_dir / "agent-truth.jsonl")
    samples = []  # (turns done, t, rss MB, capture MB, agent rss MB)
    wave_rss = []  # (turns done, rss MB) after each wave has closed and been analysed
    done = {"n": 0}

    def on_turn(row):
        done["n"] += 1
        samples.append((done["n"], time.monotonic(), rss_mb(), _Calls.capture_mb(), rss_mb(agent.proc.pid),
                        rss_mb(key="RssAnon")))

    load0 = load_avg()
    t0 = time.monotonic()
    url = agent.start(timeout=120)
    try:
        async def main():
            for wave in waves:
                await asyncio.gather(*(run_call(cfg, url, c, utts[:plan[c - 1]], store, on_turn=on_turn)
                                       for c in wave))
                store.flush(partial=True)
                gc.collect()  # aiortc's closed calls are reference cycles: count what is really kept
                wave_rss.append((done["n"], rss_mb()))

        base_rss = rss_mb()
        with RssSampler(0.5) as sampler, AnonSampler(0.5) as anon:
            asyncio.run(main())
    finally:
        agent.stop()
    wall = time.monotonic() - t0
    store.flush()
    df = pd.read_parquet(run_dir / "turns.parquet")
    truth, _ = load_truth(run_dir / "agent-truth.jsonl")
    err = errors(run_dir)
    order = {(c, t): i for i, (c, t) in enumerate(sorted(zip(df["call"], df["turn"])))}
    idx = np.array([order[(c, t)] for c, t in zip(err["call"], err["turn"])]) if len(err) else np.array([])
    flagged = int(df["anomalies"].fillna("").str.contains("harness").sum()) if "anomalies" in df else 0
    s = np.array(samples, float)
    half = s[len(s) // 2:] if len(s) else s
    w = np.array(wave_rss, float)
    out = {
        "mode": mode, "planned": turns, "rows": len(df), "ok": int((df["status"] == "ok").sum()),
        "truth_turns": sum(1 for k in truth if k[0] in set(df["agent_call_id"].dropna())), "matched": len(err),
        "calls": len(plan), "concurrent": concurrent if mode == "short" else 1, "wall_s": wall,
        "rss_start": base_rss, "rss_end": float(s[-1, 2]) if len(s) else math.nan,
        "rss_max": float(s[:, 2].max()) if len(s) else math.nan,
        "slope_kb": 1024 * slope(s[:, 0], s[:, 2]) if len(s) else math.nan,
        "slope_kb_half": 1024 * slope(half[:, 0], half[:, 2]) if len(s) else math.nan,
        "slope_nocap_kb": 1024 * slope(s[:, 0], s[:, 2] - s[:, 3]) if len(s) else math.nan,
        "slope_nocap_kb_half": 1024 * slope(half[:, 0], half[:, 2] - half[:, 3]) if len(s) else math.nan,
        "wave_slope_kb": 1024 * slope(w[:, 0], w[:, 1]) if len(w) else math.nan,
        "wave_slope_kb_half": 1024 * slope(w[len(w) // 2:, 0], w[len(w) // 2:, 1]) if len(w) else math.nan,
        "agent_slope_kb": 1024 * slope(s[:, 0], s[:, 4]) if len(s) else math.nan,
        "capture_mb_max": float(s[:, 3].max()) if len(s) else math.nan,
        "flagged": flagged, "load": f"{load0} → {load_avg()}", "run_dir": str(run_dir),
        "call_s": float(s[-1, 1] - t0) if len(s) else math.nan,
        "rss_1min": _rss_at(s, t0 + 60.0), "rss_peak": sampler.peak, "rss_anon_end": rss_mb(key="RssAnon"),
        "rss_anon_peak": anon.peak, "rss_anon_1min": _at(anon.samples, t0 + 60.0),
        "rss_anon_end_of_call": float(s[-1, 5]) if len(s) else math.nan,
    }
    for c in EAR:
        v = err[c].to_numpy(float) if c in err else np.array([])
        fin = np.isfinite(v)
        out[f"{c}_q"] = ((float(np.percentile(np.abs(v[fin]), 50)), float(np.percentile(np.abs(v[fin]), 99)),
                          float(np.abs(v[fin]).max())) if fin.any() else (math.nan,) * 3)
        out[f"{c}_drift"] = 1000 * slope(idx[fin], v[fin]) if fin.any() else math.nan
    return out


class AnonSampler(RssSampler):
    """RssAnon (anonymous memory: what the process really holds; file pages it maps can be dropped by the
    kernel at any time), sampled like RssSampler."""

    def _run(self):
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic(), rss_mb(key="RssAnon")))


def _at(samples: list, t: float) -> float:
    later = [v for ts, v in samples if ts >= t]
    return later[0] if later else math.nan


def _rss_at(s: np.ndarray, t: float) -> float:
    """RSS at the first turn that ended at or after host instant t (nan if the call was shorter)."""
    later = s[s[:, 1] >= t] if len(s) else s
    return float(later[0, 2]) if len(later) else math.nan


# ---- RSS vs call length (issue 19.3) -----------------------------------------------------------------------------
def per_turn_s() -> float:
    return estimate_s("long", 1000, 10, 1) / 1000


def run_lengths(minutes: list[float], root: Path, profile: str, reuse: bool = False) -> list[dict]:
    """One call of each length, each in a fresh process (so one call's heap does not carry into the next)."""
    import json
    import subprocess

    out = []
    for m in minutes:
        turns = max(4, int(round(m * 60 / per_turn_s())))
        res = root / f"len-{m:g}min.json"
        if not (reuse and res.exists()):
            subprocess.run([sys.executable, __file__, "--mode", "long", "--turns", str(turns), "--profile", profile,
                            "--out", str(root / f"len-{m:g}min"), "--json", str(res)], check=True)
        r = json.loads(res.read_text())[0]
        r["minutes"] = m
        out.append(r)
        print(f"{m:g} min: call {r['call_s'] / 60:.1f} min, RSS at 1 min {r['rss_1min']:.0f} MB, end of call "
              f"{r['rss_end']:.0f} MB, peak {r['rss_peak']:.0f} MB", flush=True)
    return out


def length_table(results: list[dict]) -> str:
    head = ["call length (planned)", "call, measured", "turns ok / planned / matched to truth",
            "RSS before the call, MB", "RSS at 1 min of call", "RSS at the end of the call",
            "**growth after the 1st minute**", "peak RSS incl. analysis and WAV write",
            "anonymous RSS (RssAnon): at 1 min → end of call (peak incl. analysis)",
            "capture samples in RAM, max (MB)", "user end \\|error\\| p50 / p99 / max (ms)", "load avg (1 min)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        lines.append("| " + " | ".join([
            f"{r['minutes']:g} min", f"{r['call_s'] / 60:.1f} min", f"{r['ok']} / {r['planned']} / {r['matched']}",
            f"{r['rss_start']:.0f}", "–" if not np.isfinite(r["rss_1min"]) else f"{r['rss_1min']:.0f}",
            f"{r['rss_end']:.0f}",
            "–" if not np.isfinite(r["rss_1min"]) else f"**{r['rss_end'] - r['rss_1min']:+.1f} MB**",
            f"{r['rss_peak']:.0f}",
            (f"{r['rss_anon_1min']:.0f} → {r['rss_anon_end_of_call']:.0f} ({r['rss_anon_peak']:.0f})"
             if "rss_anon_peak" in r else "–"), f"{r['capture_mb_max']:.1f}", _f(r["user_speech_end_ms_q"]), r["load"]]) + " |")
    return "\n".join(lines)


def _f(t) -> str:
    return " / ".join("–" if not np.isfinite(x) else f"{x:.2f}" for x in t)


def table(results: list[dict]) -> str:
    head = ["mode", "turns ok / planned / matched to truth / the agent's turns", "wall time",
            "RSS start → end (max), MB", "RSS slope, KB/turn (all; 2nd half)",
            "slope without the capture buffer, KB/turn (all; 2nd half)",
            "RSS after each wave of calls, KB/turn (all; 2nd half)", "agent RSS slope, KB/turn",
            "user end \\|error\\| p50 / p99 / max (ms)", "first arrival \\|error\\|",
            "first voiced offset \\|error\\|", "error drift per 1000 turns (ms): user end / arrival / offset",
            "turns flagged (harness starved)", "load avg (1 min)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        calls = f"{r['calls']} call{'s' if r['calls'] > 1 else ''}"
        if r["mode"] == "short":
            calls += f", {r['concurrent']} at a time"
        cells = [
            f"{r['mode']} ({calls})", f"{r['ok']} / {r['planned']} / {r['matched']} / {r['truth_turns']}",
            f"{r['wall_s'] / 60:.1f} min", f"{r['rss_start']:.0f} → {r['rss_end']:.0f} ({r['rss_max']:.0f})",
            f"{r['slope_kb']:.1f}; {r['slope_kb_half']:.1f}",
            f"{r['slope_nocap_kb']:.1f}; {r['slope_nocap_kb_half']:.1f}",
            f"{r['wave_slope_kb']:.1f}; {r['wave_slope_kb_half']:.1f}" if r["mode"] == "short" else "–",
            f"{r['agent_slope_kb']:.1f}", _f(r["user_speech_end_ms_q"]), _f(r["first_audio_arrival_ms_q"]),
            _f(r["first_voiced_offset_ms_q"]),
            " / ".join(f"{r[c + '_drift']:+.2f}" for c in EAR), str(r["flagged"]), r["load"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(results: list[dict]) -> str:
    out = []
    for r in results:
        lost = r["planned"] - min(r["rows"], r["ok"], r["matched"], r["truth_turns"])
        split = r["truth_turns"] - r["planned"]  # the agent heard more turns than were spoken: a starved harness
        # the leak indicator: long call → RSS minus the capture buffer; short calls → RSS after each wave
        mem = r["slope_nocap_kb_half"] if r["mode"] == "long" else r["wave_slope_kb_half"]
        flat = np.isfinite(mem) and mem * 1000 / 1024 <= FLAT_MB_PER_1000
        drifts = [r[f"{c}_drift"] for c in EAR]
        steady = all(np.isfinite(d) and abs(d) <= DRIFT_MS_PER_1000 for d in drifts)
        worst = max(r[f"{c}_q"][2] for c in EAR)
        out.append(
            f"{r['mode']}: no turn lost — {'met' if lost == 0 else 'NOT met (%d of %d)' % (lost, r['planned'])}"
            + (f" (but the agent heard {split} extra turns: utterances split by late mic frames)"
               if split > 0 else "")
            + f"; memory flat (≤ {FLAT_MB_PER_1000:g} MB per 1000 turns, "
            f"{'RSS minus capture, 2nd half' if r['mode'] == 'long' else 'RSS after each wave, 2nd half'}: "
            f"{mem * 1000 / 1024:.1f} MB per 1000 turns) — {'met' if flat else 'NOT met'}; no growing drift "
            f"(|slope| ≤ {DRIFT_MS_PER_1000:g} ms per 1000 turns) — {'met' if steady else 'NOT met'}; worst ear "
            f"error {worst:.2f} ms (tolerance {EAR_TOL_MS:g} ms) — {'within' if worst <= EAR_TOL_MS else 'OUTSIDE'}.")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1000, help="turns per mode")
    ap.add_argument("--mode", choices=["long", "short", "both"], default="both")
    ap.add_argument("--turns-per-call", type=int, default=10, help="short mode: turns per call")
    ap.add_argument("--concurrent", type=int, default=10, help="short mode: calls at a time")
    ap.add_argument("--profile", default="typical", help="reference-agent profile")
    ap.add_argument("--quick", action="store_true", help="4 turns each way: one call of 4, two calls of 2 (smoke test)")
    ap.add_argument("--estimate", action="store_true", help="print the expected runtime and stop")
    ap.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--minutes", type=float, nargs="+",
                    help="RSS vs call length: one call of each length (minutes), each in a fresh process")
    ap.add_argument("--json", help="also write the results as JSON here")
    ap.add_argument("--reuse", action="store_true", help="--minutes: take a length's results from --out if there")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the agents are stopped on the way out
    if args.quick:
        args.turns, args.turns_per_call, args.concurrent = 4, 2, 2
    modes = ["long", "short"] if args.mode == "both" else [args.mode]
    est = {m: estimate_s(m, args.turns, args.turns_per_call, args.concurrent) for m in modes}
    print("estimated runtime: " + ", ".join(f"{m} {v / 60:.1f} min" for m, v in est.items())
          + f" (total {sum(est.values()) / 60:.1f} min)", flush=True)
    if args.estimate:
        return 0
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vlh-soak-"))
    if args.minutes:
        return main_lengths(args, root, argv)
    results = []
    for m in modes:
        r = run_mode(m, args.turns, args.turns_per_call, args.concurrent, root, args.profile)
        results.append(r)
        print(f"{m}: {r['ok']}/{r['planned']} ok, {r['matched']} matched; RSS {r['rss_start']:.0f} → "
              f"{r['rss_end']:.0f} MB, slope {r['slope_kb']:.1f} KB/turn (without capture "
              f"{r['slope_nocap_kb']:.1f}); drift user end {r['user_speech_end_ms_drift']:+.2f} ms/1000 turns; "
              f"{r['wall_s'] / 60:.1f} min (estimated {est[m] / 60:.1f}); load {r['load']}", flush=True)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(results, default=str))
    text = table(results) + "\n\n" + verdict(results)
    print(text)
    print(f"run folders: {root}")
    if args.update_readme:
        cmd = " ".join(["bench/soak.py"] + (argv if argv is not None else sys.argv[1:]))
        update_section("soak", "\n".join([
            "## Soak: 1000 turns in one call and in many short calls — `bench/soak.py`", "",
            f"Date: {today()}. Machine: {machine()}. vlh {__version__}. Command: `.venv/bin/python {cmd}` "
            f"(profile {args.profile}, utterances {', '.join(TEXTS)}, reply \"{REPLY}\"; short calls of "
            f"{args.turns_per_call} turns, {args.concurrent} at a time, in waves).", "",
            "RSS is the harness process's (the agent runs in its own process; its RSS slope is shown apart). In "
            "one long call the capture (2 × float32 at 48 kHz = 384 KB per second of call) is held in memory "
            "until the call ends, by design, so its samples are subtracted to look for leaks. Errors are signed "
            "measured − truth per turn (`harness.measure.verify.errors`); drift is their least-squares slope against the "
            "turn index.", "", text]))
    return 0


def main_lengths(args, root: Path, argv) -> int:
    root.mkdir(parents=True, exist_ok=True)
    results = run_lengths(args.minutes, root, args.profile, args.reuse)
    text = length_table(results)
    print(text)
    if args.update_readme:
        cmd = " ".join(["bench/soak.py"] + (argv if argv is not None else sys.argv[1:]))
        update_section("soak-length", "\n".join([
            "## Soak: RSS vs call length — `bench/soak.py --minutes`", "",
            f"Date: {today()}. Machine: {machine()}. vlh {__version__}. Command: `.venv/bin/python {cmd}` (profile "
            f"{args.profile}, utterances {', '.join(TEXTS)}, reply \"{REPLY}\"; one call per length, each in a "
            "fresh process; the agent in its own process, not counted).", "",
            "RSS of the harness process (`/proc/self/status` VmRSS): before the call, after the first turn that "
            "ended past one minute of call, after the last turn (the call still open), and the peak sampled every "
            "0.5 s through the after-call analysis and WAV write (the capture is then read back from its disk file, "
            "whose pages count in RSS while mapped). \"Capture samples in RAM\" is the Timeline's resident chunks "
            "(the rest of the call is in its temporary file).", "", text]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
