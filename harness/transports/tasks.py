"""Asyncio housekeeping shared by the transports' calls."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(tasks) -> None:
    """Cancel a call's background tasks and wait until each has ended (whatever it raised: the call is closing)."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except (asyncio.CancelledError, Exception):
            pass
