"""`vlh agent` as a program: URL on the first stdout line, port file, truth-log file, clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import aiohttp

from agent_testclient import agent_process, converse, realtime, speech  # noqa: F401 (realtime: autouse fixture)


def test_subprocess_prints_url_writes_port_file_and_stops_on_sigterm(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "agent", "--port", "0", "--port-file",
                             str(port_file), "--profile", "fast"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert port_file.read_text().strip() == url.rsplit(":", 1)[1]
        import urllib.request

        with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_option_is_one_line_and_exit_2():
    r = subprocess.run([sys.executable, "-m", "harness", "agent", "--clock-drift-ppm", "1e9"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vlh: error:") and "clock_drift_ppm" in lines[0]


def test_busy_port_is_a_clear_error(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "harness", "agent", "--port", str(port)],
                           capture_output=True, text=True, timeout=60)
    finally:
        s.close()
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr


async def test_truth_log_file_holds_call_and_turn_records(tmp_path):
    async with agent_process(tmp_path, "--profile", "fast", "--response", "All good.",
                             packet_log=True) as (url, truth, proc):
        c, turns, _ = await converse(url, truth, [speech("Hello there")])
        deadline = time.monotonic() + 10
        while len([r for r in truth.calls if r["event"] == "end"]) < 1 and time.monotonic() < deadline:
            import asyncio

            await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as s, s.get(f"{url}/health") as r:
            assert (await r.json())["calls"] == 0
    recs = [json.loads(line) for line in open(tmp_path / "truth.jsonl")]
    kinds = [(r["kind"], r.get("event")) for r in recs]
    assert kinds == [("call", "start"), ("turn", None), ("call", "end")]
    turn = recs[1]
    assert turn["reply_text"] == "All good." and turn["config"]["llm_ttft_ms"] == 100  # the `fast` profile
    packets = [json.loads(line) for line in open(tmp_path / "packets.jsonl")]
    assert {p["dir"] for p in packets} == {"in", "out"}
    assert os.path.getsize(tmp_path / "truth.jsonl") > 0
