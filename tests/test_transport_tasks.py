"""harness/transports/tasks.py: a closing call's background tasks all end, whatever each was doing."""

import asyncio

from harness.transports.tasks import cancel_and_wait


def test_every_task_ends_whether_it_sleeps_has_failed_or_has_finished():
    async def main():
        async def boom():
            raise RuntimeError("the peer went away")

        async def ok():
            return 1

        tasks = [asyncio.ensure_future(asyncio.sleep(60)), asyncio.ensure_future(boom()), asyncio.ensure_future(ok())]
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(tasks), 2)
        return tasks

    tasks = asyncio.run(main())
    assert all(t.done() for t in tasks) and tasks[0].cancelled() and tasks[2].result() == 1
