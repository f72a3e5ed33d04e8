"""The WebRTC transport behind the runner's interface (harness/transports/base.py): an aiortc call per `vlh run`
call (client.py), the reference agent on a free local port when no --agent is given, the played-frame log
(recordings/call-<n>.playout.parquet) and the playout emulator's ticks for the measurement."""

from __future__ import annotations

from pathlib import Path

from harness.results.redact import redact_url
from harness.transports.base import Transport
from harness.transports.reference_agent import ReferenceAgent


class WebRTCTransport(Transport):
    name = "webrtc"

    def setup(self, cfg, store, out: Path):
        if cfg.agent_url is None:
            agent = ReferenceAgent(cfg.agent_profile, cfg.agent_overrides, cfg.agent_args, out / "agent-truth.jsonl")
            url = agent.start()
            store.meta.update(agent_url=url, agent="reference", profile=cfg.agent_profile,
                              agent_overrides=cfg.agent_overrides)
            return cfg, url, agent
        store.meta.update(agent_url=redact_url(cfg.agent_url), agent="external", profile=None)
        return cfg, cfg.agent_url, None

    def new_call(self, cfg, url: str):
        from harness.transports.webrtc.client import WebRTCCall

        return WebRTCCall(url, cfg.headers, cfg.jitter_buffer, cfg.processor_map,
                          connect_timeout=cfg.connect_timeout_s)

    def write_side_logs(self, call, recordings: Path, call_no: int) -> None:
        # every played frame: which packet, when (README: recordings/call-<n>.playout.parquet)
        if call.playout.ticks:
            call.playout.write_log(recordings / f"call-{call_no}.playout.parquet")

    def measure_inputs(self, cfg, call, capture):
        return call.telemetry, {"playout": call.playout, "mic_lateness": call.mic.lateness if call.mic else None,
                                "stalls": call.stalls}
