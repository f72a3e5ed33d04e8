"""The embedded reference agent: `vlh agent` in a subprocess on a free local port (the default target of `vlh run`).

The measuring side never imports the agent: it starts it as a process and talks to it over the wire. A transport
subclasses `ReferenceAgent` to change the command line (`_command`) and what "ready" yields (`_ready`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import VlhError


class ReferenceAgent:
    """`vlh agent` in a subprocess on a free local port; its truth log goes into the run folder."""

    def __init__(self, profile: str, overrides: dict, extra_args: list[str], truth_log: Path):
        self.profile, self.overrides, self.extra_args, self.truth_log = profile, overrides, extra_args, truth_log
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def _command(self, port_file: Path) -> list[str]:
        return [sys.executable, "-m", "harness", "agent", "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file), "--profile", self.profile, "--truth-log", str(self.truth_log)]

    def _env(self) -> dict:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def _ready(self, port_file: Path) -> str:
        port = int(port_file.read_text().strip())
        return f"http://127.0.0.1:{port}/api/offer"

    def start(self, timeout: float = 30.0) -> str:
        port_file = Path(tempfile.mkstemp(prefix="vlh-agent-port-")[1])
        port_file.unlink()
        cmd = self._command(port_file)
        for k, v in self.overrides.items():  # every reference-agent setting is a `vlh agent --<name>` flag
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                cmd += [f"--{str(k).replace('_', '-')}", str(item)]
        cmd += list(self.extra_args)
        self.log_path = self.truth_log.with_name("agent.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self._env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.flush()
                text = self.log_path.read_text()
                errs = [ln for ln in text.splitlines() if ln.startswith("vlh: error: ")]
                if errs:  # the agent's own one-line error names the device/setting and the fix
                    raise VlhError(f"the reference agent could not start: {errs[-1][len('vlh: error: '):]}")
                raise VlhError(f"the reference agent exited at start-up (code {self.proc.returncode}): {text[-600:]}")
            if port_file.exists() and port_file.read_text().strip():
                self.url = self._ready(port_file)
                port_file.unlink()
                return self.url
            time.sleep(0.05)
        self.stop()
        raise VlhError(f"the reference agent did not start within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()
