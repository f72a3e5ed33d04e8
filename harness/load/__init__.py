"""`vlh load`: load and capacity on Locust (issue #19).

Layer between `suite` and `testing`. Locust (gevent, monkey-patched) and aiortc (asyncio) never share a process:
each Locust worker starts one call engine (`engine.py`, a plain asyncio process like `vlh run`'s workers) and
hands it one call per Locust task; the engine writes each finished call's exact turns into the run folder
(`parts/`), and `gather.py` turns those parts into one run folder `vlh report` reads.
"""
