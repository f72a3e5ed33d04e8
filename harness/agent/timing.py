"""Waiting until an absolute instant on the loop clock (= host `time.monotonic()`), precisely.

asyncio's epoll timeout has 1 ms granularity and wakes up to ~1 ms late even on an idle machine; the pipeline's
few stage instants per turn are therefore reached by sleeping until `SPIN_S` before the target and then yielding
(`sleep(0)`, other callbacks still run) until the target has passed. The paced audio track does not spin.
"""

from __future__ import annotations

import asyncio

SPIN_S = 0.002


async def sleep_until(target: float) -> float:
    """Return the loop time at which `target` was reached (≥ target)."""
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time()
        left = target - now
        if left <= 0:
            return now
        await asyncio.sleep(left - SPIN_S if left > SPIN_S + 0.0005 else 0)
