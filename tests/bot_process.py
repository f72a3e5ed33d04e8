"""A test bot (a real pipecat pipeline, tests/pipecat_bot.py or tests/pipecat_phone_bot.py …) in its own process:
a free port, start-up with its log in the test's folder, and a clear failure with the log's tail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bot(script: Path, tmp_path: Path, *args: str, ready_line: str | None = None, env: dict | None = None,
              startup_s: float = 60.0) -> tuple[subprocess.Popen, int]:
    """`python script --port P *args`; returns (process, P) once `ready_line` is in its log (or, without one, once
    P accepts connections)."""
    port = free_port()
    log_path = tmp_path / "bot.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port), *args], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{script.name} exited: {log_path.read_text()[-2000:]}")
        if ready_line is not None:
            if ready_line in log_path.read_text():
                return proc, port
        else:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return proc, port
            except OSError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{script.name} did not start within {startup_s:.0f} s: {log_path.read_text()[-2000:]}")


def bot_instants(path: Path) -> list[dict]:
    """The bot's own instants (`pipecat_bot.py --instants`): `{"kind", "mono"}` per line, on the host's monotonic
    clock; none if the file was never written."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
