"""Scale: what vlh costs per concurrent call, against a bare aiortc client measured in the same run (issue 8.2).

For each level (1, 5, 10, 20, 40 concurrent calls):
1. Reference agents (`vlh agent`, typical profile, short replies) are started in their own processes, one per
   `--calls-per-agent` calls; calls are spread over them round-robin. Their CPU is read from /proc/<pid>/stat.
2. **vlh**: the calls run in harness worker processes (`--per-process` calls each, one asyncio loop per process,
   exactly `harness.measure.runner.run_call` as `vlh run` does it); every worker reads its own CPU time (os.times: user +
   system of all its threads — aiortc's encoder and decoder threads included) and its RSS (/proc/self/status)
   around its calls. After the calls the run folder is checked against the agents' truth logs
   (`harness.measure.verify.errors`).
3. **bare**: the same calls (same utterances, same pacing, same turn logic: speak, wait for the reply, wait for
   0.8 s of silence, pause 0.6 s) made by a plain aiortc client — a paced track of 20 ms Opus frames out,
   `track.recv()` in (aiortc's own jitter buffer and decoder), a frame RMS for the turn logic, nothing else — in
   the same process layout, against the same agents.

CPU per call is reported as % of one core over the call's duration (CPU seconds / call seconds), so calls of
slightly different lengths compare fairly; vlh's figure includes the after-call analysis and the WAV write (shown
apart as "post"). Memory per call is the growth of the workers' RSS over their pre-call baseline, divided by the
calls (and the whole RSS per call, interpreter included). The 1-minute load average is recorded at every level:
the machine is shared, and CPU time — unlike wall time — barely depends on it.

    .venv/bin/python bench/scale.py                          # levels 1 5 10 20 40, 3 turns per call
    .venv/bin/python bench/scale.py --levels 20 --turns 5
    .venv/bin/python bench/scale.py --quick                  # smoke: 2 calls, one turn (the test suite)
    .venv/bin/python bench/scale.py --update-readme          # also write the table into bench/README.md
    .venv/bin/python bench/scale.py --levels 10 --profile-dir /tmp/prof   # cProfile of each vlh worker
    .venv/bin/python bench/scale.py --py-spy 6 --py-spy-levels 10        # where the CPU goes (py-spy installed)
    .venv/bin/python bench/scale.py --locust 10 --locust-workers 1 2 --turns 20   # Locust's overhead (issue 19.4)

`--locust N`: the same N calls of `--turns` turns made twice more, by the command lines a user types —
`vlh run --calls N` and `vlh load --users N --spawn-rate N --workers K` (each user makes one call: the run time is
shorter than a call) — against the same reference agents (their CPU not counted). The CPU of each command's whole
process tree (master, workers, call engines) is read from `getrusage(RUSAGE_CHILDREN)` after it exits, start-up
and gathering included; the ratio load / run is Locust's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _common import load_avg, machine, today, update_section  # noqa: E402

from harness import __version__  # noqa: E402

TEXTS = ["What time is it now?", "Book a table for two.", "How far is the airport?", "Is the museum open today?"]
REPLIES = ["Sure thing.", "It is done.", "Twelve miles."]
EAR = ["user_speech_end_ms", "first_audio_arrival_ms", "first_voiced_offset_ms"]
STAGES = ["endpointing_ms", "stt_ms", "llm_dispatch_ms", "llm_ttft_ms", "reasoning_ms", "aggregation_ms",
          "tts_ttfb_ms", "agent_output_ms", "transport_ms"]
EAR_TOL_MS, STAGE_TOL_MS = 2.0, 5.0  # the run tests' tolerances (issue 4)
SPEECH_RMS = 0.004  # the live reply gate vlh run uses (harness.measure.runner.SPEECH_RMS)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- process measurements ----------------------------------------------------------------------------------------
def cpu_self() -> float:
    """CPU seconds (user + system) of this process, all its threads."""
    t = os.times()
    return t.user + t.system


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of stat)


def rss_mb(pid: int | str = "self", key: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


class RssSampler:
    """Samples this process's RSS every `interval` seconds in a thread (negligible CPU; same in every phase)."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic(), rss_mb()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max((s for _, s in self.samples), default=rss_mb())


# ---- the reference agents --------------------------------------------------------------------------------------
class Agents:
    """`n` reference agents, each `vlh agent` in its own process (harness.measure.runner.ReferenceAgent), started at once."""

    def __init__(self, n: int, root: Path, profile: str = "typical", overrides: dict | None = None):
        from harness.measure.runner import ReferenceAgent

        self.agents = []
        for k in range(n):
            d = root / f"agent-{k + 1}"
            d.mkdir(parents=True, exist_ok=True)
            self.agents.append(ReferenceAgent(profile, dict(overrides or {}), [], d / "agent-truth.jsonl"))
        self.urls: list[str] = []

    def __enter__(self) -> "Agents":
        with ThreadPoolExecutor(len(self.agents)) as ex:
            self.urls = list(ex.map(lambda a: a.start(timeout=120), self.agents))
        return self

    def __exit__(self, *exc):
        for a in self.agents:
            a.stop()

    def cpu(self) -> float:
        return sum(cpu_of(a.proc.pid) for a in self.agents if a.proc)

    def merge_truth(self, dest: Path) -> None:
        """All agents' truth logs as one file (records are keyed by the agent's pc_id, unique per call)."""
        with open(dest, "w") as out:
            for a in self.agents:
                if a.truth_log.exists():
                    out.write(a.truth_log.read_text())


# ---- vlh side (worker process) ---------------------------------------------------------------------------------
def _vlh_worker(cfg, urls: dict, utterances, numbers: list[int], out_dir: str, stats_path: str,
                profile_path: str | None, barrier) -> None:
    from harness.devices.priority import set_nice

    set_nice(-10)  # as vlh run's workers do
    import aiohttp  # noqa: F401  -- imports are not the calls' cost
    import aiortc  # noqa: F401
    import av  # noqa: F401

    import harness.measure.runner as hr
    import harness.transports.webrtc.client  # noqa: F401
    from harness.errors import VlhError
    from harness.results.store import PartStore

    store = PartStore(Path(out_dir))
    post = {"cpu": 0.0, "wall": 0.0}

    def timed(fn):
        def wrapper(*a, **k):
            c, w = cpu_self(), time.monotonic()
            try:
                return fn(*a, **k)
            finally:
                post["cpu"] += cpu_self() - c
                post["wall"] += time.monotonic() - w
        return wrapper

    hr.measure_call = timed(hr.measure_call)  # after-call analysis
    store.add_call = timed(store.add_call)  # the WAV write and the part file
    spans: list[tuple[float, float]] = []

    async def one(n: int):
        t = time.monotonic()
        try:
            await hr.run_call(cfg, urls[n], n, utterances, store)
        except VlhError as exc:  # call 1 re-raises a failed connection; its rows are stored as error:connect
            print(f"vlh call {n}: {exc}", file=sys.stderr)
        spans.append((t, time.monotonic()))

    async def main():
        await asyncio.gather(*(one(n) for n in numbers))

    prof = None
    if profile_path:
        import cProfile

        prof = cProfile.Profile()
    barrier.wait(300)  # every worker has imported and set up: the calls of all workers start together
    base_rss = rss_mb()
    c0, w0 = cpu_self(), time.monotonic()
    with RssSampler() as rs:
        if prof:
            prof.enable()
        asyncio.run(main())
        if prof:
            prof.disable()
    cpu, wall = cpu_self() - c0, time.monotonic() - w0
    if prof:
        prof.dump_stats(profile_path)
    _write_stats(stats_path, calls=len(numbers), cpu_s=cpu, wall_s=wall, post_cpu_s=post["cpu"],
                 post_wall_s=post["wall"], call_s=sum(b - a for a, b in spans) - post["wall"], base_rss_mb=base_rss,
                 peak_rss_mb=max(rs.peak, rss_mb()), hwm_mb=rss_mb(key="VmHWM"), spans=spans)


def _write_stats(path: str, **kw) -> None:
    Path(path).write_text(json.dumps(kw))


# ---- bare aiortc side (worker process) -------------------------------------------------------------------------
def _paced_track():
    """A plain outgoing audio track: 20 ms frames at t_start + n·20 ms, from a queue of utterances."""
    import av
    from fractions import Fraction

    from aiortc import MediaStreamTrack

    class PacedTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self):
            super().__init__()
            self.t_start = None
            self.n = 0
            self.started = asyncio.Event()
            self.queue: list[tuple[int, np.ndarray]] = []
            self.sched_end = 0

        def schedule(self, samples: np.ndarray) -> float:
            start = max((self.n + 1) * 960, self.sched_end)
            self.queue.append((start, samples))
            self.sched_end = start + len(samples)
            return self.t_start + start / 48000

        async def recv(self):
            if self.t_start is None:
                self.t_start = time.monotonic()
                self.started.set()
            target = self.t_start + self.n * 0.02
            wait = target - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            a, b = self.n * 960, (self.n + 1) * 960
            buf = np.zeros(960, np.float32)
            while self.queue and self.queue[0][0] + len(self.queue[0][1]) <= a:
                self.queue.pop(0)
            for start, seg in self.queue:
                lo, hi = max(a, start), min(b, start + len(seg))
                if hi > lo:
                    buf[lo - a:hi - a] = seg[lo - start:hi - start]
            pcm = np.clip(buf * 32768.0, -32768, 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, a, Fraction(1, 48000)
            self.n += 1
            return frame

    return PacedTrack()


async def bare_call(url: str, utterances, lead_in_s=0.8, reply_end_silence_s=0.8, timeout_s=10.0) -> dict:
    """One call by a plain aiortc client, same turn logic as vlh run. Returns {'turns', 'answered'}."""
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = _paced_track()
    pc.addTransceiver(track, direction="sendrecv")
    remote = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _on_track(t):
        if t.kind == "audio" and not remote.done():
            remote.set_result(t)

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.post(url, json={"sdp": pc.localDescription.sdp, "type": "offer"}) as resp:
            ans = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=ans["sdp"], type=ans["type"]))
    rtrack = await asyncio.wait_for(remote, 15)
    levels: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def rx():
        # a flag as well as cancel(): Python 3.11's wait_for can swallow a cancellation that races a result
        while not stop.is_set():
            try:
                f = await asyncio.wait_for(rtrack.recv(), 1.0)
            except asyncio.TimeoutError:
                continue
            except MediaStreamError:
                return
            x = f.to_ndarray().astype(np.float64) / 32768.0
            levels.append((time.monotonic(), float(np.sqrt(np.mean(x * x)))))

    rx_task = asyncio.ensure_future(rx())
    answered = 0
    try:
        await asyncio.wait_for(track.started.wait(), 15)
        await asyncio.sleep(lead_in_s)
        for utt in utterances:
            start = track.schedule(utt.samples)
            end = start + len(utt.samples) / 48000
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            reply = None
            while time.monotonic() < end + timeout_s and reply is None:
                reply = next((t for t, lv in reversed(levels) if t >= end and lv > SPEECH_RMS), None)
                if reply is None:
                    await asyncio.sleep(0.02)
            if reply is not None:
                answered += 1
                while time.monotonic() < reply + 60:
                    loud = [t for t, lv in levels if t >= reply and lv > SPEECH_RMS]
                    if levels and levels[-1][0] - (loud[-1] if loud else reply) >= reply_end_silence_s:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(utt.pause_after_s)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        rx_task.cancel()
        await asyncio.wait({rx_task}, timeout=3)
        await asyncio.wait_for(pc.close(), 10)
    return {"turns": len(utterances), "answered": answered}


def _bare_worker(urls: dict, utterances, numbers: list[int], stats_path: str, barrier) -> None:
    from harness.devices.priority import set_nice

    set_nice(-10)
    import aiohttp  # noqa: F401
    import aiortc  # noqa: F401
    import av  # noqa: F401

    spans, results = [], []

    async def one(n):
        t = time.monotonic()
        try:
            results.append(await bare_call(urls[n], utterances))
        except Exception as exc:  # a starved machine can fail a connection: count it, go on
            print(f"bare call {n}: {exc.__class__.__name__} {exc}", file=sys.stderr)
            results.append({"turns": len(utterances), "answered": 0})
        spans.append((t, time.monotonic()))

    async def main():
        await asyncio.gather(*(one(n) for n in numbers))

    barrier.wait(300)
    base_rss = rss_mb()
    c0, w0 = cpu_self(), time.monotonic()
    with RssSampler() as rs:
        asyncio.run(main())
    _write_stats(stats_path, calls=len(numbers), cpu_s=cpu_self() - c0, wall_s=time.monotonic() - w0, post_cpu_s=0.0,
                 post_wall_s=0.0, call_s=sum(b - a for a, b in spans), base_rss_mb=base_rss,
                 peak_rss_mb=max(rs.peak, rss_mb()), hwm_mb=rss_mb(key="VmHWM"),
                 answered=sum(r["answered"] for r in results), turns=sum(r["turns"] for r in results), spans=spans)


# ---- one level -------------------------------------------------------------------------------------------------
def _groups(n: int, per: int) -> list[list[int]]:
    from harness.measure.runner import call_groups

    return call_groups(n, per)


def _spawn(target, arg_sets: list[tuple], spy: tuple[str, float, float] | None = None) -> list[Path]:
    """Run one worker process per argument set. With `spy` = (path prefix, delay s, duration s), py-spy samples
    every worker (all threads, without pausing it) once its calls are under way; returns the raw profiles."""
    import shutil
    import subprocess

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(arg_sets))
    procs = [ctx.Process(target=target, args=(*a, barrier)) for a in arg_sets]
    for p in procs:
        p.start()
    spies, raws = [], []
    if spy and shutil.which("py-spy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]):
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        time.sleep(spy[1])
        for i, p in enumerate(procs):
            raw = Path(f"{spy[0]}-{i}.raw")
            raws.append(raw)
            spies.append(subprocess.Popen([exe, "record", "--pid", str(p.pid), "-d", str(int(spy[2])), "-r", "100",
                                           "-f", "raw", "-o", str(raw), "--threads", "--nonblocking"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    elif spy:
        print("py-spy is not installed (.venv/bin/pip install py-spy): no CPU breakdown", file=sys.stderr)
    for p in procs:
        p.join()
    for sp in spies:
        sp.wait()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise SystemExit(f"a worker process failed (exit codes {bad}); see its output above")
    return [r for r in raws if r.exists()]


# where the CPU goes: py-spy stacks (innermost frame first) → a named cost; the first rule that matches a frame wins
COSTS = [
    ("idle wait", ("Condition.wait", "_worker (concurrent/futures/thread.py:8", "EpollSelector.select")),
    ("Opus encode", ("OpusEncoder.encode",)),
    ("Opus decode", ("OpusDecoder.decode", "_OpusDecoder.decode")),
    ("audio level (aiortc, pure Python)", ("compute_audio_level_dbov",)),
    ("SRTP (pylibsrtp)", ("pylibsrtp",)),
    ("UDP send / receive", ("sendto", "_read_ready", "recvfrom")),
    ("executor thread hop (aiortc encoder)", ("concurrent/futures", "threading.py", "_write_to_self",
                                              "_read_from_self")),
    ("vlh after-call analysis and WAV", ("harness/measure/measure_call.py", "harness/audio/boundaries.py",
                                         "harness/audio/wavio.py", "harness/audio/turns.py", "harness/results/store.py",
                                         "harness/measure/attribution.py")),
    ("vlh mic track", ("_MicTrack",)),
    ("vlh playout emulator", ("harness/transports/webrtc/playout.py",)),
    ("vlh capture timeline", ("harness/audio/capture.py",)),
    ("vlh telemetry and pings", ("harness/telemetry/", "_ping_loop", "_on_message")),
    ("vlh loop monitor", ("LoopMonitor",)),
    ("vlh turn logic", ("harness/measure/runner.py", "harness/transports/webrtc/client.py")),
    ("bare client: paced track, RMS, turn logic", ("bare_call", "PacedTrack")),
    ("aiortc SCTP (data channel)", ("rtcsctptransport",)),
    ("aiortc RTP/RTCP (sender, receiver, jitter buffer, packets)", ("rtcrtpsender", "rtcrtpreceiver", "aiortc/rtp.py",
                                                                   "jitterbuffer", "rtcrtptransceiver")),
    ("aiortc DTLS transport", ("rtcdtlstransport",)),
    ("aioice", ("aioice",)),
    ("PyAV frames", ("av/", "from_ndarray", "to_ndarray")),
    ("asyncio event loop", ("asyncio/",)),
]


def cpu_breakdown(raws: list[Path]) -> list[tuple[str, float]]:
    """Share of the busy samples per named cost, over the py-spy raw profiles of one phase."""
    from collections import Counter

    c: Counter = Counter()
    for raw in raws:
        for line in raw.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")[::-1]
            if len(frames) < 2:  # only the thread's name: no Python frame could be read (native code)
                continue
            name = next((nm for f in frames for nm, keys in COSTS if any(k in f for k in keys)), "other")
            c[name] += int(n)
    busy = sum(v for k, v in c.items() if k != "idle wait")
    return [(k, 100 * v / busy) for k, v in c.most_common() if k != "idle wait" and busy]


def _sum_stats(files: list[Path]) -> dict:
    st = [json.loads(f.read_text()) for f in files]
    out = {k: sum(s.get(k, 0) for s in st) for k in ("calls", "cpu_s", "post_cpu_s", "call_s", "base_rss_mb",
                                                      "peak_rss_mb", "hwm_mb", "answered", "turns")}
    out["procs"] = len(st)
    out["overlap"] = peak_overlap([tuple(x) for s in st for x in s.get("spans", [])])
    return out


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of calls that were in progress at the same instant."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def run_level(n: int, args, root: Path) -> dict:
    from harness.measure.runner import RunConfig, build_utterances
    from harness.results.store import RunStore
    from harness.measure.verify import errors
    import pandas as pd

    level = root / f"calls-{n}"
    level.mkdir(parents=True, exist_ok=True)
    n_agents = max(1, math.ceil(n / args.calls_per_agent))
    cfg = RunConfig(agent_profile=args.profile, turns=args.turns, texts=TEXTS, calls=n, report=False,
                    progress=False, calls_per_process=args.per_process)
    utterances, _ = build_utterances(cfg)
    groups = _groups(n, args.per_process)
    load_start = load_avg()
    with Agents(n_agents, level / "agents", args.profile, {"response": REPLIES}) as agents:
        urls = {c: agents.urls[(c - 1) % n_agents] for c in range(1, n + 1)}
        # vlh
        run_dir = level / "vlh"
        store = RunStore(run_dir, {"transport": "webrtc", "scenario": "bench-scale", "calls": n,
                                   "config": {"calls": n, "turns": args.turns, "per_process": args.per_process,
                                              "agents": n_agents}}, force=True)
        store.meta.update(agent="reference", profile=args.profile, agent_url=", ".join(agents.urls))
        a0 = agents.cpu()
        stats = [level / f"vlh-stats-{i}.json" for i in range(len(groups))]
        prof = [str(Path(args.profile_dir) / f"calls-{n}-worker-{i}.prof") if args.profile_dir else None
                for i in range(len(groups))]
        t0 = time.monotonic()
        sampled = args.py_spy and (not args.py_spy_levels or n in args.py_spy_levels)
        spy = (str(level / "py-spy-vlh"), args.py_spy_delay, args.py_spy) if sampled else None
        vlh_raws = _spawn(_vlh_worker, [(cfg, urls, utterances, g, str(run_dir), str(s), p)
                                        for g, s, p in zip(groups, stats, prof)], spy)
        vlh_wall = time.monotonic() - t0
        agent_cpu_vlh = agents.cpu() - a0
        store.merge_parts()
        store.flush()
        vlh = _sum_stats(stats)
        # bare aiortc
        a0 = agents.cpu()
        bstats = [level / f"bare-stats-{i}.json" for i in range(len(groups))]
        spy = (str(level / "py-spy-bare"), args.py_spy_delay, args.py_spy) if sampled else None
        bare_raws = _spawn(_bare_worker, [(urls, utterances, g, str(s)) for g, s in zip(groups, bstats)], spy)
        bare = _sum_stats(bstats)
        agent_cpu_bare = agents.cpu() - a0
        load_end = load_avg()
    agents.merge_truth(run_dir / "agent-truth.jsonl")
    df = pd.read_parquet(run_dir / "turns.parquet")
    err = errors(run_dir)
    anomalies = df["anomalies"].fillna("") if "anomalies" in df else pd.Series([""] * len(df))
    flagged = df[anomalies.str.contains("harness")][["call", "turn"]]
    flagged_keys = set(map(tuple, flagged.to_numpy().tolist()))
    clean = err[[(c, t) not in flagged_keys for c, t in zip(err["call"], err["turn"])]] if len(err) else err

    def beyond(frame) -> int:
        """Turns with an ear error > EAR_TOL_MS or a stage error > STAGE_TOL_MS."""
        if not len(frame):
            return 0
        e = frame[[c for c in EAR if c in frame]].abs().max(axis=1, skipna=True).fillna(0) > EAR_TOL_MS
        st = frame[[c for c in STAGES if c in frame]].abs().max(axis=1, skipna=True).fillna(0) > STAGE_TOL_MS
        return int((e | st).sum())

    def absq(frame, cols):
        v = np.abs(np.asarray([x for c in cols if c in frame for x in frame[c] if x is not None and np.isfinite(x)],
                              float))
        return (float(np.percentile(v, 50)), float(np.percentile(v, 99)), float(v.max())) if len(v) else (math.nan,) * 3

    return {
        "calls": n, "overlap": vlh["overlap"], "bare_overlap": bare["overlap"], "agents": n_agents,
        "procs": len(groups), "turns": len(df), "ok": int((df["status"] == "ok").sum()),
        "matched": len(err), "vlh_wall_s": vlh_wall,
        "vlh_cpu_pct": 100 * vlh["cpu_s"] / vlh["call_s"], "vlh_live_pct": 100 * (vlh["cpu_s"] - vlh["post_cpu_s"])
        / vlh["call_s"], "vlh_post_s_per_call": vlh["post_cpu_s"] / n, "vlh_call_s": vlh["call_s"] / n,
        "bare_cpu_pct": 100 * bare["cpu_s"] / bare["call_s"], "bare_call_s": bare["call_s"] / n,
        "bare_answered": f"{bare['answered']}/{bare['turns']}",
        "vlh_mem_mb": (vlh["peak_rss_mb"] - vlh["base_rss_mb"]) / n, "vlh_rss_mb": vlh["peak_rss_mb"] / n,
        "bare_mem_mb": (bare["peak_rss_mb"] - bare["base_rss_mb"]) / n, "bare_rss_mb": bare["peak_rss_mb"] / n,
        "agent_cpu_pct_vlh": 100 * agent_cpu_vlh / vlh["call_s"], "agent_cpu_pct_bare": 100 * agent_cpu_bare
        / bare["call_s"],
        "ear": absq(err, EAR), "stages": absq(err, STAGES), "ear_clean": absq(clean, EAR),
        "stages_clean": absq(clean, STAGES), "flagged": len(flagged_keys), "beyond": beyond(err),
        "beyond_unflagged": beyond(clean), "load": f"{load_start} → {load_end}",
        "run_dir": str(run_dir), "vlh_costs": cpu_breakdown(vlh_raws), "bare_costs": cpu_breakdown(bare_raws),
    }


# ---- Locust's overhead: `vlh load` vs `vlh run`, the same calls (issue 19.4) ---------------------------------------
def tree_cpu(cmd: list[str], log: Path, timeout: float = 900) -> tuple[float, float, int]:
    """(CPU seconds of the command's whole process tree, wall seconds, exit code). Every descendant is reaped
    by its parent (vlh waits for its workers and engines), so RUSAGE_CHILDREN holds them all once it exits."""
    import resource
    import subprocess

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT).returncode
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), time.monotonic() - t0, rc


def _cli_turns(run_dir: Path) -> dict:
    import pandas as pd

    df = pd.read_parquet(run_dir / "turns.parquet")
    ok = df[df["status"] == "ok"]
    per_turn = []  # seconds of call per turn: each call's utterance starts, first to last, over its turns − 1
    for _, g in ok.groupby("call"):
        m = np.sort(g["mic_start_mono"].to_numpy(float))
        if len(m) > 1:
            per_turn.append((m[-1] - m[0]) / (len(m) - 1))
    return {"turns": len(df), "ok": len(ok), "calls": int(df["call"].nunique()),
            "s_per_turn": float(np.mean(per_turn)) if per_turn else math.nan}


def locust_rows(n: int, workers: list[int], args, root: Path) -> list[dict]:
    vlh = [sys.executable, "-m", "harness"]
    level = root / f"locust-{n}"
    level.mkdir(parents=True, exist_ok=True)
    n_agents = max(1, math.ceil(n / args.calls_per_agent))
    rows = []
    with Agents(n_agents, level / "agents", args.profile, {"response": REPLIES}) as agents:
        url = agents.urls[0] if n_agents == 1 else None
        if url is None:
            raise SystemExit("--locust: give --calls-per-agent ≥ N (one agent URL for the command lines)")
        runs = [("vlh run", None, vlh + ["run", "--agent", url, "--calls", str(n), "--turns", str(args.turns),
                                         "--out", str(level / "run"), "--force", "--no-report"])]
        for k in workers:
            runs.append((f"vlh load, {k} worker{'s' if k > 1 else ''}", k, vlh + [
                "load", "--agent", url, "--users", str(n), "--spawn-rate", str(n), "--run-time", "5s",
                "--workers", str(k), "--turns", str(args.turns), "--out", str(level / f"load-{k}"), "--force",
                "--no-report"]))
        for name, k, cmd in runs:
            a0 = agents.cpu()
            load0 = load_avg()
            cpu, wall, rc = tree_cpu(cmd, level / f"{name.replace(' ', '-').replace(',', '')}.log")
            d = Path(cmd[cmd.index("--out") + 1])
            t = _cli_turns(d) if (d / "turns.parquet").exists() else {"turns": 0, "ok": 0, "calls": 0,
                                                                      "s_per_turn": math.nan}
            rows.append({"name": name, "workers": k, "cpu_s": cpu, "wall_s": wall, "rc": rc, **t,
                         "agent_cpu_s": agents.cpu() - a0, "load": f"{load0} → {load_avg()}"})
            print(f"{name}: {cpu:.1f} CPU s, {t['ok']}/{t['turns']} turns ok in {t['calls']} calls, "
                  f"wall {wall:.0f} s, exit {rc}", flush=True)
    base = rows[0]
    for r in rows:
        r["cpu_per_turn"] = r["cpu_s"] / r["ok"] if r["ok"] else math.nan
        r["pct_core_per_call"] = 100 * r["cpu_per_turn"] / base["s_per_turn"]
        r["ratio"] = r["cpu_per_turn"] / base["cpu_per_turn"]
    return rows


def locust_table(rows: list[dict]) -> str:
    lines = ["| command (same calls) | calls / turns ok / turns | CPU, whole process tree (s) | CPU per turn (s) "
             "| ≈ % of a core per call | **ratio to `vlh run`** | wall (s) | agent CPU (s, not counted) "
             "| load avg (1 min) |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['calls']} / {r['ok']} / {r['turns']} | {r['cpu_s']:.1f} | "
                     f"{r['cpu_per_turn']:.3f} | {r['pct_core_per_call']:.1f} % | **{r['ratio']:.2f}×** | "
                     f"{r['wall_s']:.0f} | {r['agent_cpu_s']:.1f} | {r['load']} |")
    return "\n".join(lines)


# ---- output ----------------------------------------------------------------------------------------------------
def _f(t) -> str:
    return " / ".join("–" if not np.isfinite(x) else f"{x:.2f}" for x in t)


def in_tolerance(r: dict) -> bool:
    return (r["ok"] == r["turns"] == r["matched"] and np.isfinite(r["ear"][2]) and r["ear"][2] <= EAR_TOL_MS
            and (not np.isfinite(r["stages"][2]) or r["stages"][2] <= STAGE_TOL_MS))


def demand(r: dict) -> float:
    """Cores the vlh phase asked for: calls × (harness + agent CPU per call)."""
    return r["calls"] * (r["vlh_cpu_pct"] + r["agent_cpu_pct_vlh"]) / 100


def table(results: list[dict]) -> str:
    lines = [
        "| calls (at once: vlh / bare) | agents / harness procs | turns ok / matched to truth "
        "| vlh CPU per call, % of a core (live + post) | bare aiortc CPU per call | **ratio vlh / bare** (live only) "
        "| RSS growth per call, vlh / bare (MB) "
        "| RSS per call incl. interpreter, vlh / bare (MB) | ear \\|error\\| p50 / p99 / max (ms) "
        "| stages \\|error\\| p50 / p99 / max (ms) | turns flagged (harness starved) "
        "| turns beyond tolerance / of them not flagged | agent CPU per call "
        "| CPU demand, harness + agents (cores) | load avg (1 min) start → end |",
        "|---:|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = r["vlh_cpu_pct"] / r["bare_cpu_pct"]
        live = r["vlh_live_pct"] / r["bare_cpu_pct"]
        lines.append(
            f"| {r['calls']} ({r['overlap']} / {r['bare_overlap']}) | {r['agents']} / {r['procs']} | "
            f"{r['ok']}/{r['turns']} / {r['matched']} | "
            f"{r['vlh_cpu_pct']:.1f} % ({r['vlh_live_pct']:.1f} + {r['vlh_cpu_pct'] - r['vlh_live_pct']:.1f}) | "
            f"{r['bare_cpu_pct']:.1f} % | **{ratio:.2f}×** ({live:.2f}×) | {r['vlh_mem_mb']:.1f} / "
            f"{r['bare_mem_mb']:.1f} | {r['vlh_rss_mb']:.0f} / {r['bare_rss_mb']:.0f} | {_f(r['ear'])} | "
            f"{_f(r['stages'])} | {r['flagged']} | {r['beyond']} / {r['beyond_unflagged']} | "
            f"{r['agent_cpu_pct_vlh']:.1f} % | {demand(r):.2f} | {r['load']} |")
    return "\n".join(lines)


def verdict(results: list[dict]) -> str:
    ratios = [r["vlh_cpu_pct"] / r["bare_cpu_pct"] for r in results]
    worst = max(ratios)
    ok_levels = [r["calls"] for r in results if in_tolerance(r)]
    top = max(ok_levels, default=0)
    out = [f"Goal CPU ≤ 1.3× the bare aiortc loop: worst level {worst:.2f}× — "
           f"{'met' if worst <= 1.3 else 'NOT met'}."]
    bad = [r for r in results if not in_tolerance(r)]
    reasons = "; ".join(
        f"{r['calls']} calls: {r['ok']}/{r['turns']} ok, {r['matched']} matched, ear max {r['ear'][2]:.2f} ms, "
        f"stages max {r['stages'][2]:.2f} ms, {r['flagged']} turns flagged" for r in bad)
    out.append(f"Goal ≥ 20 concurrent calls on {os.cpu_count()} cores with every turn answered and errors within "
               f"tolerance (ear ≤ {EAR_TOL_MS:g} ms, stages ≤ {STAGE_TOL_MS:g} ms, max over all turns): "
               f"largest level in tolerance {top} — {'met' if top >= 20 else 'NOT met'}"
               + (f" (out of tolerance: {reasons})." if bad else "."))
    missed = sum(r["beyond_unflagged"] for r in results)
    out.append(f"Turns beyond tolerance that vlh did not flag as timed by a starved harness: {missed} of "
               f"{sum(r['beyond'] for r in results)} (p50 of the ear error at each level: "
               + ", ".join(f"{r['ear'][0]:.2f}" for r in results) + " ms).")
    over = [r for r in results if demand(r) > os.cpu_count()]
    if over:
        r = over[0]
        out.append(f"From {r['calls']} calls on, the harness ({r['vlh_cpu_pct']:.1f} % of a core per call; the bare "
                   f"aiortc client {r['bare_cpu_pct']:.1f} %) and the reference agents ({r['agent_cpu_pct_vlh']:.1f} "
                   f"% per call) together ask for {demand(r):.1f} cores of the {os.cpu_count()}.")
    return "\n".join(out)


def breakdown_table(results: list[dict]) -> str:
    """Where each side's busy CPU went (py-spy samples), per level that was sampled."""
    out = []
    for r in results:
        if not (r["vlh_costs"] or r["bare_costs"]):
            continue
        names = [k for k, _ in r["vlh_costs"]] + [k for k, _ in r["bare_costs"] if k not in dict(r["vlh_costs"])]
        v, b = dict(r["vlh_costs"]), dict(r["bare_costs"])
        vlh_cpu, bare_cpu = r["vlh_live_pct"], r["bare_cpu_pct"]
        out += [f"Where the CPU goes at {r['calls']} calls (py-spy samples of the busy threads during the calls; "
                f"share of the samples, and that share of the per-call CPU):", "",
                "| cost | vlh | bare aiortc |", "|---|---:|---:|"]
        for k in names:
            out.append(f"| {k} | {v.get(k, 0):.1f} % ≈ {v.get(k, 0) * vlh_cpu / 100:.2f} % of a core | "
                       f"{b.get(k, 0):.1f} % ≈ {b.get(k, 0) * bare_cpu / 100:.2f} % of a core |")
        out.append("")
    return "\n".join(out).rstrip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 5, 10, 20, 40])
    ap.add_argument("--turns", type=int, default=3, help="turns per call")
    ap.add_argument("--per-process", type=int, default=10,
                    help="calls per harness worker process, vlh and bare alike [default: 10]")
    ap.add_argument("--calls-per-agent", type=int, default=10, help="calls per reference-agent process")
    ap.add_argument("--profile", default="typical", help="reference-agent profile")
    ap.add_argument("--quick", action="store_true", help="one level of 2 calls, one turn each (smoke test)")
    ap.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--profile-dir", help="write a cProfile of every vlh worker here")
    ap.add_argument("--py-spy", type=float, metavar="SECONDS",
                    help="sample every worker with py-spy for this long and print where the CPU goes")
    ap.add_argument("--py-spy-delay", type=float, default=8.0, help="seconds after the workers start (imports, "
                    "connections) before sampling [default: 8]")
    ap.add_argument("--py-spy-levels", type=int, nargs="+", help="sample only at these levels [default: all]")
    ap.add_argument("--locust", type=int, metavar="N", help="Locust's overhead: N calls by `vlh run` and by "
                    "`vlh load` (see above), instead of the levels")
    ap.add_argument("--locust-workers", type=int, nargs="+", default=[1, 2], help="`vlh load --workers` [1 2]")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--readme-marker", default="scale", help="the bench/README.md section to write [default: scale]")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the agents are stopped on the way out
    if args.quick:
        args.levels, args.turns = [2], 1
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vlh-scale-"))
    if args.locust:
        rows = locust_rows(args.locust, args.locust_workers, args, root)
        text = locust_table(rows)
        print(text)
        if args.update_readme:
            cmd = " ".join(["bench/scale.py"] + (argv if argv is not None else sys.argv[1:]))
            update_section("scale-locust", "\n".join([
                "### Locust's overhead: `vlh load` vs `vlh run`, the same calls — `bench/scale.py --locust`", "",
                f"Date: {today()}. Machine: {machine()}. vlh {__version__}. Command: `.venv/bin/python {cmd}` "
                f"({args.locust} concurrent calls of {args.turns} turns, one reference agent in its own process, "
                "its CPU not counted).", "",
                "CPU = user + system seconds of the command's whole process tree (`vlh load`: the Locust master, "
                "the workers and their call engines; `vlh run`: its call workers), start-up, gathering and the "
                "after-call analysis included, no report. \"% of a core per call\" = CPU per answered turn / the "
                "seconds a turn lasts in the `vlh run` calls.", "", text]))
        return 0
    results = []
    for n in args.levels:
        t = time.monotonic()
        r = run_level(n, args, root)
        results.append(r)
        print(f"{n} calls: vlh {r['vlh_cpu_pct']:.1f} % of a core per call (live {r['vlh_live_pct']:.1f} %), "
              f"bare {r['bare_cpu_pct']:.1f} % → {r['vlh_cpu_pct'] / r['bare_cpu_pct']:.2f}×; "
              f"{r['ok']}/{r['turns']} ok, ear max {r['ear'][2]:.2f} ms, stages max {r['stages'][2]:.2f} ms, "
              f"flagged {r['flagged']}; load {r['load']} ({time.monotonic() - t:.0f} s)", flush=True)
    text = table(results) + "\n\n" + verdict(results)
    costs = breakdown_table(results)
    if costs:
        text += "\n\n" + costs
    print(text)
    print(f"run folders: {root}")
    if args.update_readme:
        cmd = " ".join(["bench/scale.py"] + (argv if argv is not None else sys.argv[1:]))
        title = ("## Scale: CPU and memory per concurrent call, vs a bare aiortc client — `bench/scale.py`"
                 if args.readme_marker == "scale" else f"### `bench/scale.py` ({args.readme_marker})")
        update_section(args.readme_marker, "\n".join([
            title, "",
            f"Date: {today()}. Machine: {machine()}. vlh {__version__}. Command: `.venv/bin/python {cmd}` "
            f"({args.turns} turns per call, {args.per_process} calls per harness process, "
            f"{args.calls_per_agent} calls per agent process, profile {args.profile}).", "",
            "CPU per call = the harness workers' CPU seconds (user + system, all threads) / the calls' seconds; "
            "\"post\" is vlh's after-call analysis and WAV write. The bare client is a plain aiortc peer "
            "(paced 20 ms frames out, `track.recv()` in) with the same utterances and turn logic, measured in the "
            "same run against the same agents and process layout. Agent CPU is the reference agents' (not part "
            "of the harness figure). The machine was shared with other jobs: see the load column.", "",
            text]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
