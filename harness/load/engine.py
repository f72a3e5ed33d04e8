"""The call engine of one Locust worker: a plain asyncio process (no gevent) that runs vlh calls on request.

Started by the Locust user (`locustfile.py`) as `python -m harness.load.engine '<config JSON>'`. It reads one JSON
command per line on stdin — `{"op": "call", "call": N}` — runs that call with `harness.measure.runner.run_call`
(the engine of `vlh run`, unchanged) on its own event loop, writes the call's exact turns and recording into the
run folder (`PartStore`: parts/call-N.json, recordings/call-N.wav) and prints one line per finished call on stdout:
`VLH {"call": N, "turns": [{turn, status, ttfa_ms, text, error}…]}`. EOF on stdin: finish the calls under way,
then exit. Anything else on stdout is not a protocol line (the reader ignores it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path

from harness.errors import VlhError

PREFIX = "VLH "


def config_from_json(cfg: dict):
    """The RunConfig of the calls (what `vlh load` was given) from its JSON form."""
    from harness.measure.runner import RunConfig
    from harness.transports.webrtc.client import parse_headers

    scenario = None
    if cfg.get("scenario"):
        from harness.suite.scenario import load_scenario

        scenario = load_scenario(cfg["scenario"])
    run = RunConfig(agent_url=cfg["agent_url"], scenario=scenario, turns=cfg.get("turns"),
                    timeout_s=cfg.get("timeout_s"), headers=parse_headers(cfg.get("headers") or []),
                    jitter_buffer=cfg.get("jitter_buffer", "adaptive"), processor_map=cfg.get("processor_map") or {},
                    out_dir=Path(cfg["out_dir"]), report=False, progress=False,
                    transport=cfg.get("transport", "webrtc"), provider=cfg.get("provider", "twilio"),
                    stream_params=cfg.get("stream_params") or {}, pstn_ms=float(cfg.get("pstn_ms") or 0.0),
                    telemetry_file=Path(cfg["telemetry_file"]) if cfg.get("telemetry_file") else None)
    if cfg.get("codec_delay_s") is not None:  # as the transport's set-up left it (μ-law: 0)
        run = dataclasses.replace(run, measure=dataclasses.replace(run.measure, codec_delay_s=cfg["codec_delay_s"]))
    return run


def summary_line(call: int, rows: list[dict], t_start_wall: float, t_end_wall: float, timeouts_s=()) -> str:
    """The protocol line of a finished call: per turn its status, exact TTFA (ms) and the reply timeout (ms)."""
    def timeout_ms(turn):
        k = (turn or 0) - 1
        return timeouts_s[k] * 1e3 if 0 <= k < len(timeouts_s) else None

    turns = [{"turn": r.get("turn"), "status": r.get("status"), "ttfa_ms": r.get("ttfa_ms"),
              "text": r.get("text"), "error": r.get("error") or "", "timeout_ms": timeout_ms(r.get("turn"))}
             for r in rows]
    return PREFIX + json.dumps({"call": call, "turns": turns, "t_start_wall": t_start_wall,
                                "t_end_wall": t_end_wall}, default=float)


class Engine:
    def __init__(self, cfg: dict):
        from harness.measure.runner import build_utterances
        from harness.results.store import PartStore

        self.run_cfg = config_from_json(cfg)
        self.utterances, self.scenario = build_utterances(self.run_cfg)
        self.store = PartStore(Path(cfg["out_dir"]))
        self.tasks: set[asyncio.Task] = set()

    async def one(self, call: int) -> None:
        from harness.measure.runner import run_call

        t0 = time.time()
        try:
            rows = await run_call(self.run_cfg, self.run_cfg.agent_url, call, self.utterances, self.store)
        except VlhError as exc:  # the connect failure of a call is recorded as its turns' error rows
            rows = [{"turn": i + 1, "status": "error:connect", "error": str(exc), "text": u.text}
                    for i, u in enumerate(self.utterances)]
        except Exception as exc:  # one broken call must not stop the engine: its turns fail, the run goes on
            rows = [{"turn": i + 1, "status": "error:harness", "error": f"{type(exc).__name__}: {exc}",
                     "text": u.text} for i, u in enumerate(self.utterances)]
        t1 = time.time()
        self._mark_wall(call, t0, t1)
        print(summary_line(call, rows, t0, t1, [u.timeout_s for u in self.utterances]), flush=True)

    def _mark_wall(self, call: int, t0: float, t1: float) -> None:
        """Add the call's wall-clock span to its part (gather.py counts concurrent calls with it, across hosts)."""
        part = self.store.dir / "parts" / f"call-{call}.json"
        if not part.exists():
            return
        d = json.loads(part.read_text())
        d.update(t_start_wall=t0, t_end_wall=t1, mono_to_wall=time.time() - time.monotonic())
        tmp = part.with_name(f".{part.name}.tmp")
        tmp.write_text(json.dumps(d))
        tmp.replace(part)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 16)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print(PREFIX + json.dumps({"ready": True, "turns": len(self.utterances), "scenario": self.scenario}),
              flush=True)
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                cmd = json.loads(line)
                call = int(cmd["call"])
            except (ValueError, KeyError, TypeError):
                print(f"vlh load engine: ignored a bad command line {line[:80]!r}", file=sys.stderr)
                continue
            t = asyncio.ensure_future(self.one(call))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def main(argv: list[str]) -> int:
    import logging

    from harness.devices.priority import set_nice

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_nice(-10)  # like `vlh run`'s worker processes: a stamping process should not wait behind batch work
    try:
        engine = Engine(json.loads(argv[0]))
    except VlhError as exc:
        print(PREFIX + json.dumps({"error": str(exc)}), flush=True)
        return 2
    asyncio.run(engine.serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
