"""The one small interface every transport offers the runner.

A call: `await connect()`, then `schedule(samples, at=None) -> start_mono` puts speech on the mic, the ear side fills
ch1 on its own, `ear_level_after(t)` lets the runner follow the reply live, `capture()` freezes both channels on the
host clock, `await close()`. Telemetry (if the transport carries any) lands in `telemetry`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from harness.audio.capture import Capture


class CallTransport(Protocol):
    telemetry: object
    disconnected: bool

    async def connect(self) -> None: ...

    def schedule(self, samples: np.ndarray, at: float | None = None) -> float: ...

    def ear_frames_since(self, t: float) -> list[tuple[float, float]]: ...

    def capture(self) -> Capture: ...

    async def close(self) -> None: ...
