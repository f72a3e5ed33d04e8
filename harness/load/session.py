"""One `vlh load` session: the reference agent (unless --agent), a Locust master and K workers as child processes,
then the workers' calls gathered into one run folder (gather.py) with its report.

Modes: `workers=K` (a local master and K local workers), `role="master"` (a master here; workers join from other
hosts with `vlh load --worker --master-host H`, writing into the same run folder on a shared path), `role="worker"`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import VlhError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass
class LoadConfig:
    scenario: object | None = None  # harness.suite.scenario.Scenario
    scenario_path: str | None = None
    turns: int | None = None
    users: int = 1
    spawn_rate: float = 1.0
    run_time_s: float = 60.0
    workers: int = 1
    role: str = "local"  # local (master + K workers here), master, worker
    master_host: str = "127.0.0.1"
    master_port: int = 5557
    web: bool = False
    agent_url: str | None = None
    agent_profile: str = "typical"
    agent_overrides: dict = field(default_factory=dict)
    header_specs: list[str] = field(default_factory=list)  # raw 'Name: $VAR' specs, resolved in each engine
    timeout_s: float | None = None
    jitter_buffer: str = "adaptive"
    processor_map: dict = field(default_factory=dict)
    out_dir: Path | None = None
    force: bool = False
    report: bool = True
    stop_timeout_s: float | None = None  # default: one whole call (see call_length_s)
    quiet: bool = False  # Locust's console output to <run>/locust-master.log instead of the terminal
    transport: str = "webrtc"  # any transport that carries concurrent calls (not loopback: one sound card)
    provider: str = "twilio"  # ws-telephony only, as `vlh run`
    stream_params: dict = field(default_factory=dict)
    pstn_ms: float = 0.0
    # set by start_agent from the transport's set-up, passed to every worker's engine
    telemetry_file: str | None = None
    codec_delay_s: float | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_length_s(utterances) -> float:
    """The longest a call can take: every utterance, its reply timeout, a 60 s reply and its pause."""
    return 5.0 + sum(len(u.samples) / 48000.0 + u.timeout_s + 60.0 + u.pause_after_s for u in utterances)


def locust_base(cfg: LoadConfig) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]


def master_command(cfg: LoadConfig, config_json: str, out: Path, port: int, expect: int, stop_timeout: float,
                   bind_host: str) -> list[str]:
    cmd = locust_base(cfg) + ["--master", "--master-bind-host", bind_host, "--master-bind-port", str(port),
                              "--users", str(cfg.users), "--spawn-rate", str(cfg.spawn_rate),
                              "--stop-timeout", f"{stop_timeout:.0f}", "--csv", str(out / "locust"),
                              "--vlh-config", config_json, "--vlh-run-time", str(cfg.run_time_s)]
    if cfg.web:
        cmd += ["--autostart", "--web-host", "127.0.0.1"]
    else:
        cmd += ["--headless", "--expect-workers", str(expect)]
    return cmd


def worker_command(cfg: LoadConfig, host: str, port: int) -> list[str]:
    return locust_base(cfg) + ["--worker", "--master-host", host, "--master-port", str(port)]


def run_worker(cfg: LoadConfig) -> int:
    """`vlh load --worker --master-host H`: one Locust worker here (its engine writes into the master's run folder,
    given by the master: a path both hosts see)."""
    return subprocess.call(worker_command(cfg, cfg.master_host, cfg.master_port))


def run_load(cfg: LoadConfig) -> Path:
    """Run the load, gather the run folder, write its report; returns the run folder."""
    from harness.measure.runner import RunConfig, build_utterances
    from harness.results.store import RunStore, default_out_dir

    utterances, scenario_name = build_utterances(RunConfig(scenario=cfg.scenario, turns=cfg.turns,
                                                           timeout_s=cfg.timeout_s))
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir()
    store = RunStore(out, load_meta(cfg, scenario_name, len(utterances)), force=cfg.force)
    agent = None
    try:
        cfg, url, agent = start_agent(cfg, store, out)
        run_locust(cfg, url, scenario_name, out, call_length_s(utterances))
    finally:
        if agent is not None:
            agent.stop()
        gather_into(store)
    finish(store, cfg)
    return out


def run_config(cfg: LoadConfig):
    """The `vlh run` settings of one call under load (what each worker's engine runs, and the transport's set-up)."""
    from harness.measure.runner import RunConfig

    return RunConfig(transport=cfg.transport, agent_url=cfg.agent_url, agent_profile=cfg.agent_profile,
                     agent_overrides=cfg.agent_overrides, scenario=cfg.scenario, turns=cfg.turns,
                     timeout_s=cfg.timeout_s, jitter_buffer=cfg.jitter_buffer, processor_map=cfg.processor_map,
                     provider=cfg.provider, stream_params=cfg.stream_params, pstn_ms=cfg.pstn_ms)


def check_transport(cfg: LoadConfig) -> None:
    """One line when the transport cannot carry a load test (or its settings do not fit)."""
    from harness.transports.registry import transport_for

    if cfg.transport == "loopback":
        raise VlhError("vlh load --transport loopback: sound devices carry one call at a time; load an agent over "
                       "webrtc or ws-telephony")
    transport_for(cfg.transport).check(run_config(cfg))


def load_meta(cfg: LoadConfig, scenario_name: str, turns: int) -> dict:
    from harness.measure.measure_call import MeasureOptions
    from harness.transports.registry import transport_for

    meta = {"transport": cfg.transport, "scenario": scenario_name,
            "scenario_file": cfg.scenario_path,
            "config": {"turns": turns, "jitter_buffer": cfg.jitter_buffer, "timeout_s": cfg.timeout_s,
                       "processor_map": cfg.processor_map,
                       "header_names": sorted(h.split(":", 1)[0].strip() for h in cfg.header_specs)},
            "codec_delay_ms": MeasureOptions().codec_delay_s * 1e3,
            "load": {"engine": "locust", "users": cfg.users, "spawn_rate": cfg.spawn_rate,
                     "run_time_s": cfg.run_time_s, "workers": cfg.workers, "role": cfg.role}}
    transport_for(cfg.transport).describe(meta)
    return meta


def run_locust(cfg: LoadConfig, url: str, scenario_name: str, out: Path, call_s: float, tag: str = "") -> None:
    """The Locust master (and, locally, its K workers) until the master exits."""
    config_json = json.dumps({"agent_url": url, "scenario": cfg.scenario_path, "scenario_name": scenario_name,
                              "turns": cfg.turns, "timeout_s": cfg.timeout_s, "headers": cfg.header_specs,
                              "jitter_buffer": cfg.jitter_buffer, "processor_map": cfg.processor_map,
                              "out_dir": str(out.resolve()), "transport": cfg.transport,
                              "provider": cfg.provider, "stream_params": cfg.stream_params, "pstn_ms": cfg.pstn_ms,
                              "telemetry_file": cfg.telemetry_file, "codec_delay_s": cfg.codec_delay_s})
    local = cfg.role == "local"
    port = free_port() if local else cfg.master_port
    stop_timeout = cfg.stop_timeout_s if cfg.stop_timeout_s is not None else call_s
    cmd = master_command(cfg, config_json, out, port, cfg.workers if local else max(1, cfg.workers), stop_timeout,
                         "127.0.0.1" if local else "*")
    logs = []
    master_log = open(out / f"locust-master{tag}.log", "w") if cfg.quiet else None
    logs.append(master_log)
    master = subprocess.Popen(cmd, stdout=master_log, stderr=subprocess.STDOUT if master_log else None)
    workers = []
    try:
        if local:
            for k in range(cfg.workers):
                f = open(out / f"locust-worker-{k}{tag}.log", "w")
                logs.append(f)
                workers.append(subprocess.Popen(worker_command(cfg, "127.0.0.1", port), stdout=f,
                                                stderr=subprocess.STDOUT))
        limit = cfg.run_time_s + stop_timeout + 120 if not cfg.web else None
        try:
            master.wait(limit)
        except subprocess.TimeoutExpired:
            raise VlhError(f"the Locust master did not finish within {limit:.0f} s; see {out}/locust-*.log")
        for k, w in enumerate(workers):  # a worker quits with the master (its calls finished before the master quit)
            try:
                w.wait(stop_timeout + 30)
            except subprocess.TimeoutExpired:  # a hung worker: its engine's finished calls are already on disk
                print(f"vlh load: Locust worker {k} had not quit {stop_timeout + 30:.0f} s after the master; "
                      f"terminated (see {out}/locust-worker-{k}{tag}.log)", file=sys.stderr)
                w.terminate()
    finally:
        for p in [master, *workers]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for f in logs:
            if f:
                f.close()


def gather_into(store, level: int | None = None) -> None:
    """The workers' calls into the run store (renumbered after the calls it already holds)."""
    from harness.load.gather import renumber

    renumber(store.dir, first=1 + len({r["call"] for r in store.rows}), level=level)
    store.merge_parts()


def finish(store, cfg: LoadConfig, extra: dict | None = None) -> dict:
    from harness.results.slo import evaluate

    slo = []
    sc = cfg.scenario
    if sc is not None and store.rows and hasattr(sc.slo, "thresholds") and sc.slo.thresholds():
        slo = [r.to_dict() for r in evaluate(store.dataframe(), sc.slo.thresholds())]
    meta = store.flush(extra={"slo": slo, **(extra or {})})
    if cfg.report and store.rows:
        try:
            from harness.report.render import write_report

            write_report([store.dir], store.dir / "report.html")
        except VlhError as exc:
            print(f"vlh: report not written: {exc}", file=sys.stderr)
    return meta


def start_agent(cfg: LoadConfig, store, out: Path):
    """The agent under load, set up by the transport as `vlh run` does: `--agent` as given (its URL redacted in
    run.json), or the reference agent started on a free local port with its truth log (and, on ws-telephony, its
    telemetry file) in the run folder. Returns (cfg with what the workers need from the set-up, url, the started
    agent or None)."""
    import dataclasses

    from harness.transports.registry import transport_for

    run_cfg, url, agent = transport_for(cfg.transport).setup(run_config(cfg), store, out)
    tel = run_cfg.telemetry_file
    return dataclasses.replace(cfg, telemetry_file=str(Path(tel).resolve()) if tel else None,
                               codec_delay_s=run_cfg.measure.codec_delay_s), url, agent
