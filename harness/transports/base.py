"""The transport interface: what the runner (harness/measure/runner.py) asks of a transport, and nothing else.

Two parts:

- a **call** (`CallTransport`): `await connect()`, then `schedule(samples, at=None) -> start_mono` puts speech on the
  mic, the ear side fills ch1 on its own, `ear_frames_since(t)` lets the runner follow the reply live, `capture()`
  freezes both channels on the host clock, `await close()`. `disconnected`/`disconnect_reason` say when the call
  died under the runner. `mic` (optional) is the paced mic track where a scenario's background noise can be mixed.
- a **transport** (`Transport`): everything around the calls — checking the run's settings, the run-wide set-up and
  teardown (starting the reference agent, devices, leases), making each call, the call's side logs, what the
  measurement needs from it (telemetry, playout log, mic lateness, loop stalls, whether the ear is a device), and
  per-turn notes it adds afterwards.

The runner builds a transport with `transport_for(cfg)` (harness/transports/registry.py) and never asks which one
it is. `cfg` is the runner's RunConfig, duck-typed here (transports sit below measure in the layer order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.audio.capture import Capture


class CallTransport(Protocol):
    telemetry: object
    disconnected: bool
    disconnect_reason: str

    async def connect(self) -> None: ...

    def schedule(self, samples: np.ndarray, at: float | None = None) -> float: ...

    def ear_frames_since(self, t: float) -> list[tuple[float, float]]: ...

    def capture(self) -> Capture: ...

    async def close(self) -> None: ...


class Transport:
    """The run-wide side of a transport. Subclasses override what differs; the defaults do nothing."""

    name = "?"
    codec_delay_ms: float | None = None  # None: the run's MeasureOptions.codec_delay_s stands

    def check(self, cfg) -> None:
        """Raise VlhError (one line: which setting, what to do) when the run's settings do not fit."""

    def describe(self, meta: dict) -> None:
        """Adjust the run folder's meta (run.json) for this transport before the run starts."""

    def setup(self, cfg, store, out: Path) -> tuple[Any, str, Any]:
        """Run-wide set-up. Returns (cfg — maybe with settings filled in, the agent URL or label for the calls,
        the started agent process or None)."""
        raise NotImplementedError

    def teardown(self, cfg) -> None:
        """Undo `setup` (the started agent is stopped by the runner)."""

    def new_call(self, cfg, url: str) -> CallTransport:
        raise NotImplementedError

    def write_side_logs(self, call, recordings: Path, call_no: int) -> None:
        """Per-call logs next to the recording (e.g. the played-frame log)."""

    def measure_inputs(self, cfg, call, capture: Capture) -> tuple[Any, dict]:
        """(telemetry log or None, keyword arguments for measure_call: playout, mic_lateness, stalls,
        device_path)."""
        return call.telemetry, {}

    def annotate(self, call, plans, rows: list[dict]) -> None:
        """Per-turn additions after measuring (glitches, anomalies)."""

    def after_run(self, cfg, store, agent) -> None:
        """Checks of the finished run (raise VlhError for a set-up fault)."""
