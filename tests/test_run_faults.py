"""`vlh run` faults: bad agent URLs and answers, silent agents, dropped calls, Ctrl-C, secrets."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from aiohttp import web
from bot_process import free_port

from harness.cli import main as vlh

SECRET = "s3cr3t-t0ken-do-not-leak"


class FakeServer:
    """A tiny HTTP server on a free port answering /api/offer with whatever a test wants."""

    def __init__(self, handler):
        self.handler = handler

    def __enter__(self):
        import threading

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            app = web.Application()
            app.router.add_post("/api/offer", self.handler)
            self.runner = web.AppRunner(app)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)
        return f"http://127.0.0.1:{self.port}/api/offer"

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _one_line_error(capsys, code, expected=2):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == expected
    assert err and err[-1].startswith("vlh: error:"), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_unreachable_agent(tmp_path, capsys):
    code = vlh(["run", "--agent", f"http://127.0.0.1:{free_port()}/api/offer", "--turns", "1",
                "--out", str(tmp_path / "r"), "--no-report"])
    assert "unreachable" in _one_line_error(capsys, code, 3)  # exit 3: the agent could not be reached at all
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["state"] == "failed" and "unreachable" in meta["error"]
    # the failed run's folder takes the next run without --force
    code = vlh(["run", "--agent", f"http://127.0.0.1:{free_port()}/api/offer", "--turns", "1",
                "--out", str(tmp_path / "r"), "--no-report"])
    assert "unreachable" in _one_line_error(capsys, code, 3)


def test_unreachable_agent_with_calls_in_worker_processes(tmp_path, capsys):
    """More than 16 calls run in worker processes; their 'unreachable' is still exit 3 (it was 2)."""
    code = vlh(["run", "--agent", f"http://127.0.0.1:{free_port()}/api/offer", "--turns", "1", "--calls", "17",
                "--out", str(tmp_path / "r"), "--no-report"])
    assert "unreachable" in _one_line_error(capsys, code, 3)
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["state"] == "failed" and "unreachable" in meta["error"]


def test_agent_that_accepts_and_never_answers_times_out_as_unreachable(tmp_path, capsys):
    async def handler(request):
        await asyncio.sleep(30)
        return web.Response(status=500)

    with FakeServer(handler) as url:
        t = time.monotonic()
        code = vlh(["run", "--agent", url, "--turns", "1", "--connect-timeout", "1", "--out", str(tmp_path / "r"),
                    "--no-report"])
        took = time.monotonic() - t
    line = _one_line_error(capsys, code, 3)
    assert "within 1 s" in line and "--connect-timeout" in line and "offer" in line, line
    assert took < 10


@pytest.mark.parametrize("status,body,expect,exit_code", [
    (404, "no such endpoint", "HTTP 404", 2),  # a wrong URL: bad input
    (503, "overloaded", "HTTP 503", 3),  # the agent cannot take a call: unreachable
    (200, "<html>hello</html>", "did not answer with JSON", 2),
])
def test_bad_answers(tmp_path, capsys, status, body, expect, exit_code):
    async def handler(request):
        return web.Response(status=status, text=body)

    with FakeServer(handler) as url:
        code = vlh(["run", "--agent", url, "--turns", "1", "--out", str(tmp_path / "r"), "--no-report"])
    assert expect in _one_line_error(capsys, code, exit_code)
    assert "call None" not in capsys.readouterr().err


def test_answer_without_audio(tmp_path, capsys):
    async def handler(request):
        offer = await request.json()
        # echo a syntactically valid SDP with the audio m-line rejected (port 0)
        sdp = "\r\n".join(l for l in offer["sdp"].split("\r\n")) .replace("m=audio 9 ", "m=audio 0 ")
        import re
        sdp = re.sub(r"m=audio \d+ ", "m=audio 0 ", offer["sdp"])
        return web.json_response({"sdp": sdp, "type": "answer"})

    with FakeServer(handler) as url:
        code = vlh(["run", "--agent", url, "--turns", "1", "--out", str(tmp_path / "r"), "--no-report"])
    assert "without an audio track" in _one_line_error(capsys, code)


def test_bad_flags_are_clear(capsys, tmp_path):
    code = vlh(["run", "--jitter-buffer", "elastic", "--out", str(tmp_path / "r")])
    assert "fixed:<ms>" in _one_line_error(capsys, code)
    code = vlh(["run", "--header", "Authorization", "--out", str(tmp_path / "r")])
    assert "Name: value" in _one_line_error(capsys, code)


def _truth_turns(path: Path) -> int:
    if not path.exists():
        return 0
    n = 0
    for line in path.read_text().splitlines():
        try:
            n += json.loads(line).get("kind") == "turn"
        except ValueError:
            pass  # a line being written
    return n


def _start_agent(tmp_path, *flags):
    port_file = tmp_path / "port"
    truth = tmp_path / "truth.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "agent", "--port", "0", "--port-file", str(port_file),
                             "--truth-log", str(truth), "--response", "Okay.", *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if port_file.exists() and port_file.read_text().strip():
            return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/api/offer"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("agent did not start")


def test_silent_agent_turns_are_no_response_and_run_goes_on(tmp_path, capsys):
    # an LLM that takes 60 s: no reply within --timeout 2
    proc, url = _start_agent(tmp_path, "--llm-ttft-ms", "60000")
    try:
        code = vlh(["run", "--agent", url, "--turns", "2", "--timeout", "2", "--out", str(tmp_path / "r"),
                    "--no-report", "--json"])
        assert code == 1  # the run completed, no turn was answered: CI must see it
        assert "2 of 2 turns not answered (2 no_response)" in capsys.readouterr().err
        code = vlh(["run", "--agent", url, "--turns", "1", "--timeout", "2", "--out", str(tmp_path / "r2"),
                    "--no-report", "--json", "--allow-failures"])
        assert code == 0
    finally:
        proc.kill()
    df = pd.read_parquet(tmp_path / "r" / "turns.parquet")
    assert list(df["status"]) == ["no_response", "no_response"]
    assert df["user_speech_end_mono"].notna().all()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["state"] == "complete"


def test_agent_dying_mid_call_keeps_finished_turns(tmp_path):
    proc, url = _start_agent(tmp_path)
    out = tmp_path / "r"
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--agent", url, "--turns", "6",
                            "--out", str(out), "--no-report", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    # kill the agent once its third reply is out: two replies have surely reached the harness's ear
    truth = tmp_path / "truth.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline:
        if _truth_turns(truth) >= 3:
            break
        time.sleep(0.2)
    proc.kill()
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr  # the run completed with failed turns
    assert "turns not answered" in stderr and "error:disconnected" in stderr
    df = pd.read_parquet(out / "turns.parquet")
    assert (df["status"] == "ok").sum() >= 2
    assert df["status"].str.startswith("error:disconnected").any(), df["status"].tolist()


@pytest.mark.parametrize("transport", ["webrtc", "ws-telephony"])
def test_ctrl_c_keeps_finished_turns_and_marks_partial(tmp_path, transport):
    out = tmp_path / "r"
    # SIGINT back to its default in the child: a test session started in the background (`make test &`) ignores
    # SIGINT, and an ignored signal is inherited — the run would never see the Ctrl-C
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--transport", transport, "--turns", "8",
                            "--out", str(out), "--no-report", "--agent-set", "response=Okay."],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    truth = out / "agent-truth.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline:
        if _truth_turns(truth) >= 3:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # the third reply's end at the ear
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["partial"] is True
    df = pd.read_parquet(out / "turns.parquet")
    assert (df["status"] == "ok").sum() >= 2
    assert (out / "recordings" / "call-1.wav").exists()


def test_auth_header_never_reaches_outputs(tmp_path, monkeypatch):
    seen = {}

    async def handler(request):
        seen["auth"] = request.headers.get("Authorization")
        return web.Response(status=401, text="bad token")

    monkeypatch.setenv("VLH_TEST_TOKEN", SECRET)
    with FakeServer(handler) as url:
        code = vlh(["run", "--agent", url + f"?token={SECRET}", "--header", "Authorization: Bearer $VLH_TEST_TOKEN",
                    "--turns", "1", "--out", str(tmp_path / "r"), "--no-report"])
    assert code == 2
    assert seen["auth"] == f"Bearer {SECRET}"  # it was sent …
    for p in (tmp_path / "r").rglob("*"):  # … and never written
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p
