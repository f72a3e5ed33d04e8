"""Scheduling priority: a real-time agent should not wait for the CPU behind batch work.

On a loaded 2-core machine an asyncio timer in a normal-priority process wakes up to ~30 ms late (p99 ~10 ms);
at nice −10 the tail drops to a few ms. Like PulseAudio's `high-priority`, the agent asks for a better nice
value and carries on without it when not permitted. On Linux the nice value belongs to the calling thread and is
inherited by threads it creates later, so call this before starting threads (or around a block, see `niced`).
The same holds for the harness's loopback capture: Python callbacks need the GIL, and whoever holds it (the event
loop thread) must not sit preempted behind batch work while the real-time callback threads wait for it (measured at
load 7 on 2 cores: sessions whose callbacks were held back by hundreds of ms).
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger(__name__)


def set_nice(nice: int) -> int | None:
    """Set the calling thread's nice value; returns the previous one, or None if not permitted."""
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        if before == nice:
            return before
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        return before
    except (PermissionError, OSError, AttributeError) as exc:
        log.info("cannot set nice %d (%s); running at the current priority", nice, exc)
        return None


@contextlib.contextmanager
def niced(nice: int = -10):
    """Run a block at `nice` (if permitted), then restore the previous value."""
    before = set_nice(nice)
    try:
        yield before is not None
    finally:
        if before is not None:
            set_nice(before)
