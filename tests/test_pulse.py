"""vlh loopback up/down/status: a real PulseAudio daemon, real null sinks, the ALSA PCMs sounddevice sees.

Each test uses its own state directory and its own daemon (never the user's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import VlhError
from harness.devices import pulse


def alive(pid: int) -> bool:
    return pid > 0 and pulse._pid_is_pulseaudio(pid)


@pytest.fixture
def sdir(tmp_path):
    d = tmp_path / "state"
    yield d
    pulse.down(d, force=True)


@pytest.fixture
def foreign(tmp_path):
    """A PulseAudio server vlh did not set up (stands for the user's own): (server, state dir for pactl)."""
    d = tmp_path / "foreign"
    server, pid, _ = pulse.start_daemon(d)
    yield server, d
    pulse._stop_daemon(pid, None)


def test_up_is_idempotent_and_down_removes_what_it_created(sdir):
    st = pulse.up(sdir, reuse_running=False)
    pid = st["daemon_pid"]
    assert st["started_daemon"] and alive(pid)
    sinks = pulse.list_sinks(sdir, st["server"])
    for name in ("vlh_mic", "vlh_ear"):
        assert sinks[name]["sample_specification"] == "float32le 1ch 48000Hz"
        assert sinks[name]["owner_module"] == st["modules"][name]
    conf = (sdir / pulse.ALSA_FILE).read_text()
    for pcm, (dev, _, _) in pulse.PCMS.items():
        assert f"pcm.{pcm} {{" in conf and f'device "{dev}"' in conf
    assert conf.count(f'server "{st["server"]}"') == 4

    again = pulse.up(sdir, reuse_running=False)
    assert again["daemon_pid"] == pid and again["modules"] == st["modules"] and again["leases"] == ["cli"]

    res = pulse.down(sdir)
    assert res["was_up"] and not res["kept_for"]
    assert not alive(pid)
    assert not (sdir / pulse.ALSA_FILE).exists() and not (sdir / "loopback.json").exists()
    assert pulse.down(sdir)["was_up"] is False


def test_leases_keep_the_devices_for_live_processes(sdir):
    pulse.up(sdir, reuse_running=False)
    mine, also_mine = pulse.process_lease(), pulse.process_lease()  # two holders in one process
    assert mine != also_mine and pulse.lease_alive(mine)
    pulse.up(sdir, lease=mine)
    pulse.up(sdir, lease=also_mine)
    res = pulse.down(sdir)  # the CLI's lease goes, this process still holds them
    assert sorted(res["kept_for"]) == sorted([mine, also_mine]) and (sdir / pulse.ALSA_FILE).exists()
    assert pulse.down(sdir, lease=also_mine)["kept_for"] == [mine]  # one holder leaving keeps them for the other
    assert pulse.down(sdir, lease=mine)["removed"]
    assert not (sdir / "loopback.json").exists()


def test_a_dead_process_lease_does_not_hold_the_devices(sdir):
    pulse.up(sdir, reuse_running=False)
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    dead = pulse.process_lease(child.pid)
    assert not pulse.lease_alive(dead)
    pulse.up(sdir, lease=dead)
    assert pulse.down(sdir)["removed"]  # only the dead lease was left


def test_down_cleans_up_after_the_daemon_crashed(sdir):
    st = pulse.up(sdir, reuse_running=False)
    os.kill(st["daemon_pid"], signal.SIGKILL)
    for _ in range(100):
        if not alive(st["daemon_pid"]):
            break
        time.sleep(0.02)
    s = pulse.status(sdir)
    assert not s["server_alive"] and any("does not answer" in p for p in s["problems"])
    with pytest.raises(VlhError, match="PulseAudio is not running .* run `vlh loopback down` and `vlh loopback up`"):
        pulse.ensure_ready(sdir)
    pulse.down(sdir)
    assert not (sdir / "loopback.json").exists() and not (sdir / pulse.ALSA_FILE).exists()
    st2 = pulse.up(sdir, reuse_running=False)  # and up works again
    assert alive(st2["daemon_pid"]) and st2["daemon_pid"] != st["daemon_pid"]


def test_up_repairs_a_crashed_daemon(sdir):
    st = pulse.up(sdir, reuse_running=False)
    os.kill(st["daemon_pid"], signal.SIGKILL)
    time.sleep(0.2)
    st2 = pulse.up(sdir, reuse_running=False)
    assert alive(st2["daemon_pid"]) and pulse.ensure_ready(sdir)


def test_a_running_server_is_reused_and_only_our_sinks_are_removed(sdir, foreign, monkeypatch):
    server, fdir = foreign
    pulse.pactl(fdir, server, "load-module", "module-null-sink", "sink_name=user_sink")
    monkeypatch.setenv("PULSE_SERVER", server)
    st = pulse.up(sdir)
    assert st["server"] == server and not st["started_daemon"]
    assert {"vlh_mic", "vlh_ear", "user_sink"} <= set(pulse.list_sinks(fdir, server))
    res = pulse.down(sdir)
    assert len([r for r in res["removed"] if r.startswith("null sink")]) == 2
    left = pulse.list_sinks(fdir, server)
    assert "user_sink" in left and "vlh_mic" not in left and "vlh_ear" not in left
    assert pulse.server_info(fdir, server) is not None  # the user's daemon keeps running


def test_a_sink_at_another_rate_is_a_clear_error(sdir, foreign, monkeypatch):
    server, fdir = foreign
    pulse.pactl(fdir, server, "load-module", "module-null-sink", "sink_name=vlh_mic", "rate=44100")
    monkeypatch.setenv("PULSE_SERVER", server)
    with pytest.raises(VlhError, match=r"sink vlh_mic runs at .*44100Hz.*needs 48000 Hz \(sample-rate mismatch\): "
                                       r"unload it \(`pactl unload-module \d+`\)"):
        pulse.up(sdir)
    pulse.down(sdir)
    assert "vlh_mic" in pulse.list_sinks(fdir, server)  # not ours: left alone


def test_no_pulseaudio_binary_is_a_clear_error(sdir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(VlhError, match=r"PulseAudio is not installed .*apt-get install pulseaudio"):
        pulse.up(sdir, reuse_running=False)


def test_a_daemon_that_refuses_to_start_is_a_clear_error(sdir, tmp_path, monkeypatch):
    # fault injection: a `pulseaudio` that fails the way a broken installation does
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "pulseaudio"
    fake.write_text("#!/bin/sh\necho 'E: [pulseaudio] main.c: Daemon startup failed.' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    with pytest.raises(VlhError, match=r"PulseAudio refused to start \(exit 1\): .*Daemon startup failed"):
        pulse.up(sdir, reuse_running=False)


def test_alsa_config_path_keeps_the_users_files(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSA_CONFIG_PATH", "/etc/my-alsa.conf")
    assert pulse.alsa_config_path(tmp_path) == f"/etc/my-alsa.conf:{tmp_path / pulse.ALSA_FILE}"
    monkeypatch.setenv("ALSA_CONFIG_PATH", f"/etc/my-alsa.conf:/elsewhere/{pulse.ALSA_FILE}")  # an older vlh state
    assert pulse.alsa_config_path(tmp_path) == f"/etc/my-alsa.conf:{tmp_path / pulse.ALSA_FILE}"
    monkeypatch.delenv("ALSA_CONFIG_PATH")
    assert pulse.alsa_config_path(tmp_path) == f"{pulse.system_alsa_conf()}:{tmp_path / pulse.ALSA_FILE}"
    assert not (Path.home() / ".asoundrc").exists() or "vlh" not in (Path.home() / ".asoundrc").read_text()


def test_cli_up_status_down(sdir, capsys):
    assert main(["loopback", "--state-dir", str(sdir), "up", "--private"]) == 0
    out = capsys.readouterr().out
    assert "loopback devices up" in out and "ALSA_CONFIG_PATH=" in out
    assert main(["loopback", "--state-dir", str(sdir), "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    names = {d["name"] for d in st["sounddevice"]}
    assert set(pulse.PCMS) <= names
    assert st["sinks"]["vlh_mic"]["spec"] == "float32le 1ch 48000Hz"
    assert main(["loopback", "--state-dir", str(sdir), "down"]) == 0
    assert "loopback devices down" in capsys.readouterr().out
    assert main(["loopback", "--state-dir", str(sdir), "status"]) == 0
    assert "loopback devices are down" in capsys.readouterr().out
