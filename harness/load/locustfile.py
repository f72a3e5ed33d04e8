"""The Locust side of `vlh load`: one Locust user = one caller; its task is one whole vlh call.

Loaded by Locust (`locust -f harness/load/locustfile.py`, which `vlh load` runs for you) in the master and in every
worker. Locust monkey-patches the process for gevent, so the calls themselves do not run here: each worker starts
one call engine (`python -m harness.load.engine`, plain asyncio, the `vlh run` call code) on first use and asks it
for calls over a pipe. When a call ends, each of its turns is fired as a Locust request:

    request_type = the transport (webrtc), name = "<scenario> turn <k>", response_time = exact TTFA at the ear (ms)

A turn without an answer (no_response, error:*) is a Locust failure whose response time is the reply timeout the
caller sat through. Locust's buckets round response times; the exact turns are in the run folder.

`--vlh-run-time S` (master): after S seconds of load, stop the users and let every call under way finish (up to
Locust's --stop-timeout), then quit — Locust's own --run-time quits at once and would cut calls mid-turn.

The end of a run does not use Locust's master→worker "stop" message. A worker handles every message from the master
in one greenlet, and its "stop" handler blocks that greenlet while the users finish their calls and then sleeps
another --stop-timeout before the worker reports ready again (locust/runners.py, WorkerRunner.handle_message); the
master meanwhile forgets the worker ("client_stopped" removes it from its clients), so its "quit" is sent to nobody,
and the worker, deaf to the master's heartbeats, quits only when it has heard none for 60 s. So the master sends
"vlh_stop", which each worker handles in a greenlet of its own: its users finish their calls while the worker keeps
answering heartbeats, it reports its last turns (and 0 users), and the master's "quit" then reaches it at once.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import time

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from locust import User, events, task
from locust.runners import STATE_INIT, MasterRunner, WorkerRunner

from harness.load.engine import PREFIX

CALLS_PER_WORKER = 100000  # engine call numbers: (worker index + 1) × this + n; gather.py renumbers 1…N


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--vlh-config", default="", include_in_web_ui=False,
                        help="vlh: the calls' configuration as JSON (written by `vlh load`)")
    parser.add_argument("--vlh-run-time", type=float, default=0.0, include_in_web_ui=False,
                        help="vlh: seconds of load, then stop the users and let calls under way finish")


class EngineClient:
    """This worker's call engine (a child process) and the calls waiting on it."""

    def __init__(self, config_json: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.load.engine", config_json],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.waiting: dict[int, AsyncResult] = {}
        self.ready = AsyncResult()
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        for line in self.proc.stdout:
            if not line.startswith(PREFIX):
                continue
            msg = json.loads(line[len(PREFIX):])
            if "ready" in msg or "error" in msg and "call" not in msg:
                self.ready.set(msg)
                continue
            res = self.waiting.pop(msg.get("call"), None)
            if res is not None:
                res.set(msg)
        gone = {"error": f"the call engine exited (code {self.proc.wait()})"}
        if not self.ready.ready():
            self.ready.set(gone)
        for res in self.waiting.values():
            res.set(gone)
        self.waiting.clear()

    def call(self, n: int) -> dict:
        res = AsyncResult()
        self.waiting[n] = res
        self.proc.stdin.write(json.dumps({"op": "call", "call": n}) + "\n")
        self.proc.stdin.flush()
        return res.get()

    def close(self, timeout: float = 60.0) -> int:
        """EOF: the engine finishes the calls under way, then exits; returns its exit code (killed: negative)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


_engine: EngineClient | None = None
_engine_lock = Semaphore()
_numbers = itertools.count(1)


def engine(environment) -> EngineClient:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = EngineClient(environment.parsed_options.vlh_config)
            msg = _engine.ready.get()
            if "error" in msg:
                raise RuntimeError(f"vlh call engine: {msg['error']}")
        return _engine


@events.quitting.add_listener
def _close_engine(environment, **_kw):
    if _engine is not None:
        t0 = time.monotonic()
        code = _engine.close()
        logging.getLogger(__name__).info("vlh: the call engine exited (code %d) %.2f s after its input closed", code,
                                         time.monotonic() - t0)


def fire_turns(environment, transport: str, scenario: str, msg: dict) -> None:
    """Each turn of a finished call as one Locust request (see the module docstring)."""
    for t in msg.get("turns", []):
        ok = t.get("status") == "ok" and t.get("ttfa_ms") is not None
        exc = None if ok else RuntimeError(f"{t.get('status')}: {t.get('error') or 'no reply'}"[:200])
        rt = t["ttfa_ms"] if ok else (t.get("timeout_ms") or 0.0)
        environment.events.request.fire(request_type=transport, name=f"{scenario} turn {t.get('turn')}",
                                        response_time=rt, response_length=0, exception=exc, context={})


BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.25, 2.0


def backoff_s(failed_in_a_row: int) -> float:
    """A caller's pause before its next call after `failed_in_a_row` calls in a row that got nothing from the agent:
    0.25 s, doubling, at most 2 s; none after a call the agent answered (a failed connect takes milliseconds, and
    without a pause each caller would dial ~100 times a second)."""
    if failed_in_a_row <= 0:
        return 0.0
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failed_in_a_row - 1))


def call_failed(msg: dict) -> bool:
    """The call got nothing from the agent: no turns (the engine failed it), or every turn an error:* (connect,
    disconnected…). Unanswered turns (no_response) do not count: the caller sat through their reply timeouts."""
    turns = msg.get("turns")
    return not turns or all(str(t.get("status") or "").startswith("error:") for t in turns)


class VlhCaller(User):
    """One caller: calls the agent, says the scenario's turns, hangs up, calls again (at once; after a failed call,
    after a short back-off: backoff_s)."""

    failed_in_a_row = 0

    def wait_time(self) -> float:
        return backoff_s(self.failed_in_a_row)

    @task
    def one_call(self):
        env = self.environment
        eng = engine(env)
        idx = getattr(env.runner, "worker_index", 0) if isinstance(env.runner, WorkerRunner) else 0
        n = (idx + 1) * CALLS_PER_WORKER + next(_numbers)
        msg = eng.call(n)
        self.failed_in_a_row = self.failed_in_a_row + 1 if call_failed(msg) else 0
        cfg = json.loads(env.parsed_options.vlh_config)
        if "turns" not in msg:
            env.events.request.fire(request_type=cfg.get("transport", "webrtc"), name=f"{cfg['scenario_name']} call",
                                    response_time=0.0, response_length=0,
                                    exception=RuntimeError(msg.get("error", "call failed")), context={})
            return
        fire_turns(env, cfg.get("transport", "webrtc"), cfg["scenario_name"], msg)


STOP_MESSAGE = "vlh_stop"


@events.init.add_listener
def _on_init(environment, runner=None, **_kw):
    if isinstance(runner, WorkerRunner):
        runner.register_message(STOP_MESSAGE, _finish_calls, concurrent=True)


def _finish_calls(environment, msg=None, **_kw) -> None:
    """Worker, on the master's "vlh_stop" (in a greenlet of its own, so the worker keeps handling the master's
    messages): stop the users, each after its call under way (up to --stop-timeout), then report at once — the
    report carries the last turns and 0 users, which the master waits for — and show the master the worker ready."""
    runner = environment.runner
    runner.stop()
    runner._send_stats()
    runner.worker_state = STATE_INIT


def _stop_after(environment, seconds: float) -> None:
    gevent.sleep(seconds)
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.stop(send_stop_to_client=False)  # no new users anywhere (a worker joining late gets none)
        runner.send_message(STOP_MESSAGE)  # to every worker: finish the calls under way, then report
        wait_s = (environment.stop_timeout or 0) + 60  # as long as Locust's master waits for its workers to stop
        end = time.monotonic() + wait_s
        while runner.user_count and time.monotonic() < end:  # 0 once every worker reported after its last call
            gevent.sleep(0.2)
        if runner.user_count:
            logging.getLogger(__name__).error("vlh: workers still had %d users %.0f s after the stop; quitting",
                                              runner.user_count, wait_s)
    else:
        runner.stop()  # each user's call under way finishes first (--stop-timeout)
    runner.quit()  # the master's "quit" reaches every worker (still its clients); each reports once more, exits
    if getattr(environment, "web_ui", None) is not None:  # --web: the UI is Locust's main greenlet; the run is over
        environment.web_ui.stop()


_timer = []


@events.test_start.add_listener
def _start_timer(environment, **_kw):
    opts = environment.parsed_options
    if opts is None or not opts.vlh_run_time or _timer:
        return
    if isinstance(environment.runner, (MasterRunner,)) or not isinstance(environment.runner, WorkerRunner):
        _timer.append(gevent.spawn(_stop_after, environment, opts.vlh_run_time))
