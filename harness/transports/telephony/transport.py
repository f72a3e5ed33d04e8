"""The telephony transport behind the runner's interface (harness/transports/base.py): vlh plays the phone provider
on the bot's media-stream WebSocket (call.py). With no --agent, the reference agent serves the protocol
(`vlh agent --ws-telephony`), writing its telemetry to <run>/agent-telemetry.jsonl (the side channel: vlh events
cannot travel on the provider's socket); vlh reads that file after each call, on the host clock.

Attribution: the ear is the emulated provider playout queue, so `first_audio_arrival` is the media message's arrival
stamp and `first_audio_playout` its play instant (the queue's wait); μ-law has no algorithmic delay, so the codec
stage is 0 ms. `--pstn-ms N` (a caller-side PSTN leg) is never mixed into the measured stages: it is reported apart
as `pstn_estimated_ms` and `ttfa_with_pstn_ms` = ttfa + 2·N (both legs), source `estimated`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harness.errors import VlhError
from harness.results.redact import redact_url
from harness.transports.base import Transport
from harness.transports.telephony.call import UNDERRUN_MIN_S
from harness.transports.reference_agent import ReferenceAgent

log = logging.getLogger(__name__)


class PhoneAgent(ReferenceAgent):
    """`vlh agent --ws-telephony` on a free local port; truth log and telemetry file in the run folder."""

    def __init__(self, profile, overrides, extra_args, truth_log: Path, telemetry: Path):
        super().__init__(profile, overrides, extra_args, truth_log)
        self.telemetry = telemetry

    def _command(self, port_file: Path) -> list[str]:
        return super()._command(port_file) + ["--ws-telephony", "--telemetry-file", str(self.telemetry)]

    def _ready(self, port_file: Path) -> str:
        port = int(port_file.read_text().strip())
        return f"ws://127.0.0.1:{port}/ws"


@dataclass
class _Tick:
    """One played chunk, in the shape measure_call's `first_packet` reads."""

    t: float
    arrival: float
    seq: int
    kind: str = "play"


class _PlayoutView:
    """The provider playout queue as measure_call's playout log: which chunk plays at an instant."""

    def __init__(self, call):
        self.chunks = list(call.playout.chunks)

    def tick_at(self, t: float):
        for k, p in enumerate(self.chunks):
            if p.start <= t < p.end:
                return _Tick(p.start, p.arrival, k + 1)
        return None

    def stats_between(self, a: float, b: float) -> dict:
        n = 0
        prev_end = None
        for p in self.chunks:
            if a <= p.start < b and prev_end is not None and UNDERRUN_MIN_S <= p.start - prev_end < 1.0:
                n += 1
            prev_end = p.end
        return {"expand": n, "conceal": 0, "longest_gap": 0}


class TelephonyTransport(Transport):
    name = "ws-telephony"

    def check(self, cfg) -> None:
        if cfg.agent_url is not None and not str(cfg.agent_url).startswith(("ws://", "wss://")):
            raise VlhError(f"--agent {redact_url(cfg.agent_url)}: with --transport ws-telephony the agent is a "
                           "WebSocket URL, ws://HOST:PORT/PATH")
        from harness.transports.telephony.providers import PROVIDERS

        if cfg.provider not in PROVIDERS:
            raise VlhError(f"--provider {cfg.provider!r}: vlh speaks {', '.join(PROVIDERS)}")

    def describe(self, meta: dict) -> None:
        meta["codec_delay_ms"] = 0.0
        meta["config"].pop("jitter_buffer", None)

    def setup(self, cfg, store, out: Path):
        import dataclasses

        store.meta.update(provider=cfg.provider, pstn_ms=cfg.pstn_ms or None, ear_sample_rate=8000)
        # μ-law is sample-by-sample: no codec delay between a chunk's play instant and its first sample
        cfg = dataclasses.replace(cfg, measure=dataclasses.replace(cfg.measure, codec_delay_s=0.0))
        if cfg.agent_url is None:
            tel = out / "agent-telemetry.jsonl"
            tel.unlink(missing_ok=True)
            cfg = dataclasses.replace(cfg, telemetry_file=tel)
            agent = PhoneAgent(cfg.agent_profile, cfg.agent_overrides, cfg.agent_args, out / "agent-truth.jsonl", tel)
            url = agent.start()
            store.meta.update(agent_url=url, agent="reference", profile=cfg.agent_profile,
                              agent_overrides=cfg.agent_overrides, telemetry_file=tel.name)
            return cfg, url, agent
        store.meta.update(agent_url=redact_url(cfg.agent_url), agent="external", profile=None,
                          telemetry_file=str(cfg.telemetry_file) if cfg.telemetry_file else None)
        return cfg, cfg.agent_url, None

    def new_call(self, cfg, url: str):
        from harness.transports.telephony.call import TelephonyCall

        call = TelephonyCall(url, cfg.provider, cfg.headers, cfg.stream_params)
        call.pstn_ms = cfg.pstn_ms
        return call

    def write_side_logs(self, call, recordings: Path, call_no: int) -> None:
        call.write_wire_log(recordings / f"call-{call_no}.messages.parquet")

    def measure_inputs(self, cfg, call, capture):
        return _file_telemetry(cfg, capture, call.stream_id), {"playout": _PlayoutView(call),
                                                               "mic_lateness": call.lateness}

    def annotate(self, call, plans, rows: list[dict]) -> None:
        pstn = float(getattr(call, "pstn_ms", 0.0) or 0.0)
        silent = not call.messages.get("media") and not call.disconnected
        for r in rows:
            r["provider"] = call.provider.name
            if silent and r.get("status") == "no_response" and not r.get("error"):
                r["error"] = ("the agent sent no media message on this call (does it answer on the streamSid of "
                              "vlh's `start` message?)")
            if pstn:
                r["pstn_estimated_ms"] = pstn
                r["ttfa_with_pstn_ms"] = r["ttfa_ms"] + 2 * pstn if r.get("ttfa_ms") is not None else None


def _file_telemetry(cfg, capture, stream_id: str):
    """The agent's side-channel telemetry (JSONL on the host clock) written during this call — its lines, when the
    agent tags them with the call's stream id (`_call`); None without a file."""
    if cfg.telemetry_file is None:
        return None
    from harness.telemetry.file import FileTelemetry

    tel = FileTelemetry(cfg.processor_map)
    try:
        tel.load(cfg.telemetry_file, t_from=capture.t0_mono - 1.0, call=stream_id)
    except VlhError as exc:
        log.warning("ws-telephony: %s", exc)
        tel.anomalies.append(str(exc))
    return tel
