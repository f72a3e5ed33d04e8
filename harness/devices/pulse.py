"""The loopback audio devices: a PulseAudio daemon, two 48 kHz null sinks, and ALSA PCMs for sounddevice.

`up()` starts (or reuses) a PulseAudio daemon in user mode, loads two null sinks — `vlh_mic` (the agent's microphone
is its `.monitor`) and `vlh_ear` (the agent's speaker) — and writes a vlh-owned ALSA configuration file that defines
four `type pulse` PCMs. Debian's PortAudio only has the ALSA host API; these PCMs are how sounddevice reaches the
sinks:

    vlh_mic          playback   the harness plays here = what the agent's microphone picks up
    vlh_mic_monitor  capture    what reaches the agent's microphone (the agent records this)
    vlh_ear          playback   the agent's speaker (the agent plays here)
    vlh_ear_monitor  capture    what the user hears (the harness records this)

Nothing of the user's own configuration is touched: the PCMs live in `<state>/vlh-asound.conf`, which a process
reaches through `ALSA_CONFIG_PATH=<system alsa.conf>:<state>/vlh-asound.conf` (`activate()` does this in-process;
`child_env()` gives the variables for another process). The PCMs name the PulseAudio server explicitly, so no
`PULSE_SERVER` is needed for them.

Everything `up()` creates is recorded in a state file (`<state>/loopback.json`, under a lock); `down()` removes only
that, also after a crash (a dead daemon, a dead owner). Users of the devices hold *leases* (`"cli"` for
`vlh loopback up`, `"pid:<pid>:<start>"` for a process); `down()` drops one lease and tears the devices down only
when no live lease is left (or when forced).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.audio import SAMPLE_RATE
from harness.errors import VlhError

log = logging.getLogger(__name__)

SAMPLE_SPEC = "float32le 1ch 48000Hz"  # float end to end: what the harness writes reaches the monitor bit-exact
# Sinks are loaded with norewinds=1: a sink that may rewind renders up to 2 s ahead while idle, so a new stream waits
# up to 2 s for its first audio (measured here: 1.0-3.2 s; without rewinds 0.06-0.2 s), and streams joining it
# trigger rewinds; on a loaded machine 4 of 11 sessions on rewinding sinks had a discontinuity on the monitor, 1 of
# 11 without.
MIC_SINK, EAR_SINK = "vlh_mic", "vlh_ear"
SINKS = {
    MIC_SINK: "vlh: the agent's microphone (the harness plays here)",
    EAR_SINK: "vlh: the agent's speaker (the agent plays here)",
}
# ALSA PCM name -> (PulseAudio device, direction, description)
PCMS = {
    "vlh_mic": (MIC_SINK, "playback", "vlh: play into the agent's microphone"),
    "vlh_mic_monitor": (MIC_SINK + ".monitor", "capture", "vlh: what reaches the agent's microphone"),
    "vlh_ear": (EAR_SINK, "playback", "vlh: the agent's speaker"),
    "vlh_ear_monitor": (EAR_SINK + ".monitor", "capture", "vlh: what the user hears"),
}
STATE_FILE = "loopback.json"
ALSA_FILE = "vlh-asound.conf"  # distinctive: ALSA_CONFIG_PATH entries with this name are vlh's (see alsa_config_path)
CLI_LEASE = "cli"
DAEMON_RT_PRIORITY = 5
PACTL_TIMEOUT = 10.0
APT_HINT = "apt-get install pulseaudio pulseaudio-utils libasound2-plugins (or run `make setup`)"


@dataclass(frozen=True)
class Devices:
    """The sounddevice names of the loopback devices, from the harness's and the agent's side."""

    mic_play: str = "vlh_mic"  # harness → agent's microphone
    mic_record: str = "vlh_mic_monitor"  # what reaches the agent's microphone (agent's audio-in)
    ear_play: str = "vlh_ear"  # the agent's audio-out
    ear_record: str = "vlh_ear_monitor"  # what the user hears (harness records it)


DEVICES = Devices()


# ---- where things live ------------------------------------------------------------------------------------------
def state_dir(path: str | os.PathLike | None = None) -> Path:
    """`path`, else `$VLH_STATE_DIR`, else `$XDG_STATE_HOME/vlh`, else `~/.local/state/vlh`."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get("VLH_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "vlh"


def runtime_dir(sdir: Path) -> Path:
    """The private runtime directory of a daemon vlh starts (its socket and pid file); short enough for a socket."""
    cand = sdir / "run"
    if len(str(cand / "native")) <= 100:
        return cand
    h = hashlib.sha1(str(sdir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"vlh-{os.getuid()}-{h}"


def system_alsa_conf() -> Path:
    """The system's top-level ALSA configuration (what ALSA loads when ALSA_CONFIG_PATH is unset)."""
    base = os.environ.get("ALSA_CONFIG_DIR")
    for cand in ([Path(base) / "alsa.conf"] if base else []) + [Path("/usr/share/alsa/alsa.conf"),
                                                                Path("/usr/local/share/alsa/alsa.conf")]:
        if cand.exists():
            return cand
    raise VlhError("no ALSA configuration found (/usr/share/alsa/alsa.conf); install libasound2 and "
                   "libasound2-plugins")


def alsa_config_path(sdir: Path, base: str | None = None) -> str:
    """The ALSA_CONFIG_PATH value that adds vlh's PCMs to whatever the process already loads."""
    ours = str(sdir / ALSA_FILE)
    base = os.environ.get("ALSA_CONFIG_PATH") if base is None else base
    parts = [p for p in (base or "").split(":") if p and Path(p).name != ALSA_FILE] or [str(system_alsa_conf())]
    return ":".join(parts + [ours])


def alsa_conf_text(server: str) -> str:
    lines = ["# Written by `vlh loopback up`; removed by `vlh loopback down`. Do not edit.",
             f"# Use: ALSA_CONFIG_PATH=<system alsa.conf>:{ALSA_FILE}  (see `vlh loopback status`)"]
    for name, (dev, direction, desc) in PCMS.items():
        lines.append(f'pcm.{name} {{\n    type pulse\n    device "{dev}"\n    server "{server}"\n'
                     f'    hint {{ show on description "{desc} ({direction})" }}\n}}')
    return "\n".join(lines) + "\n"


# ---- state + lock -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(sdir: Path):
    sdir.mkdir(parents=True, exist_ok=True)
    with open(sdir / "loopback.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(sdir: Path) -> dict:
    p = sdir / STATE_FILE
    if not p.exists():
        return {}
    try:
        st = json.loads(p.read_text())
        if not isinstance(st, dict):
            raise ValueError("not an object")
        return st
    except ValueError as exc:
        raise VlhError(f"{p}: unreadable loopback state ({exc}); run `vlh loopback down --force`") from None


def _write_state(sdir: Path, st: dict) -> None:
    p = sdir / STATE_FILE
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(st, indent=1))
    tmp.replace(p)


def process_lease(pid: int | None = None, tag: str | None = None) -> str:
    """A lease held by a process (with its start time, so a recycled pid is not mistaken for it) and a tag unique
    to the holder, so that two holders in one process (a test session running `vlh loopback calibrate` in-process)
    never drop each other's lease."""
    import uuid

    pid = os.getpid() if pid is None else pid
    return f"pid:{pid}:{_proc_start(pid)}:{tag or uuid.uuid4().hex[:8]}"


def _proc_start(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def lease_alive(lease: str) -> bool:
    if not lease.startswith("pid:"):
        return True
    try:
        _, pid, start = lease.split(":")[:3]
        return _proc_start(int(pid)) == start and start != "?"
    except ValueError:
        return False


# ---- PulseAudio -------------------------------------------------------------------------------------------------
def _client_env(sdir: Path, server: str | None = None) -> dict:
    """Environment for pactl: never autospawn a daemon behind our back."""
    env = dict(os.environ)
    conf = sdir / "client.conf"
    if not conf.exists():
        sdir.mkdir(parents=True, exist_ok=True)
        conf.write_text("autospawn = no\n")
    env["PULSE_CLIENTCONFIG"] = str(conf)
    if server:
        env["PULSE_SERVER"] = server
    return env


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        raise VlhError(f"PulseAudio is not installed (no `{binary}` on PATH): {APT_HINT}")
    return path


def pactl(sdir: Path, server: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [_need("pactl")] + (["-s", server] if server else []) + list(args)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=PACTL_TIMEOUT,
                             env=_client_env(sdir, server))
    except subprocess.TimeoutExpired:
        raise VlhError(f"PulseAudio server {server or '(default)'} did not answer `pactl {' '.join(args)}` "
                       f"within {PACTL_TIMEOUT:.0f} s; run `vlh loopback down --force` and `vlh loopback up`")
    if check and res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise VlhError(f"PulseAudio server {server or '(default)'}: `pactl {' '.join(args)}` failed: "
                       f"{msg[-1] if msg else 'exit ' + str(res.returncode)}")
    return res


def server_info(sdir: Path, server: str | None) -> dict | None:
    """`pactl info` as a dict, or None when no server answers there."""
    try:
        res = pactl(sdir, server, "--format=json", "info", check=False)
    except VlhError:
        return None
    if res.returncode != 0:
        return None
    try:
        return json.loads(res.stdout)
    except ValueError:
        return None


def _server_string(info: dict) -> str:
    s = str(info.get("server_string", ""))
    return "unix:" + s if s.startswith("/") else s


def list_sinks(sdir: Path, server: str) -> dict[str, dict]:
    res = pactl(sdir, server, "--format=json", "list", "sinks")
    try:
        return {s["name"]: s for s in json.loads(res.stdout or "[]")}
    except (ValueError, KeyError, TypeError) as exc:
        raise VlhError(f"PulseAudio server {server}: cannot read the sink list ({exc})") from None


def _pid_is_pulseaudio(pid: int) -> bool:
    try:
        return b"pulseaudio" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def start_daemon(sdir: Path) -> tuple[str, int, str]:
    """Start a private PulseAudio daemon (user mode, also as root). Returns (server, pid, runtime dir)."""
    binary = _need("pulseaudio")
    rdir = runtime_dir(sdir)
    rdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if rdir.stat().st_uid != os.getuid():
        raise VlhError(f"{rdir}: belongs to another user; remove it or set VLH_STATE_DIR")
    os.chmod(rdir, 0o700)
    sock = rdir / "native"
    server = f"unix:{sock}"
    stale = _find_daemon(str(rdir))
    if stale:  # a daemon vlh started here earlier, whose state was lost: adopt it if it answers
        if server_info(sdir, server) is not None:
            return server, stale, str(rdir)
        _stop_daemon(stale, str(rdir))
    with contextlib.suppress(FileNotFoundError):  # a crashed daemon's pid file makes a new one refuse to start
        (rdir / "pulse" / "pid").unlink()
    if sock.is_socket() or sock.is_symlink():
        sock.unlink()
    elif sock.exists():
        raise VlhError(f"{sock}: exists and is not a socket; remove it (vlh keeps its PulseAudio socket there)")
    logf = sdir / "pulseaudio.log"
    env = _client_env(sdir)
    env["XDG_RUNTIME_DIR"] = str(rdir)
    env.pop("PULSE_SERVER", None)
    cmd = [binary, "--daemonize=yes", "--system=no", "--exit-idle-time=-1", "--disallow-exit=yes",
           "--disallow-module-loading=no", "--use-pid-file=yes", "-n", "--realtime=yes", "--high-priority=yes",
           "--disable-shm=yes",  # memfd blocks trip PulseAudio bug #824 here (log spam, copies); sockets suffice
           f"--log-target=file:{logf}", "--log-level=notice",
           "-L", f"module-native-protocol-unix socket={sock} auth-anonymous=1"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    except subprocess.TimeoutExpired:
        raise VlhError(f"PulseAudio did not start within 30 s; see {logf}") from None
    if res.returncode != 0 or server_info(sdir, server) is None:
        tail = _tail(logf) or (res.stderr or res.stdout).strip()
        raise VlhError(f"PulseAudio refused to start (exit {res.returncode}): {tail}; see {logf}")
    pid = 0
    with contextlib.suppress(OSError, ValueError):
        pid = int((rdir / "pulse" / "pid").read_text().split()[0])
    if pid:
        make_realtime(pid)
    return server, pid, str(rdir)


def make_realtime(pid: int) -> bool:
    """Put the daemon's main thread under SCHED_RR (when permitted). PulseAudio's own --realtime covers only its
    I/O threads (and it resets its scheduling at start, so this is done from outside, afterwards); client audio
    passes through its main thread, which otherwise competes with the machine's other work at nice −11 — measured
    here at load 9 with other nice −10 processes: harness output underruns of 0.1–1.4 s, several per 30 s."""
    try:
        os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(DAEMON_RT_PRIORITY))
        return True
    except (PermissionError, OSError, AttributeError) as exc:
        log.info("cannot make PulseAudio (pid %s) real-time: %s", pid, exc)
        return False


def _tail(path: Path, n: int = 2) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines()
                 if ln.startswith("E:") or "error" in ln.lower()]
        return " | ".join(lines[-n:])
    except OSError:
        return ""


def _find_daemon(rdir: str | None) -> int:
    """The pid of the pulseaudio process serving `rdir`'s socket (0 if none), found by its command line."""
    if not rdir:
        return 0
    needle = f"socket={Path(rdir) / 'native'}".encode()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (p / "cmdline").read_bytes()
                if b"pulseaudio" in cmd and needle in cmd:
                    return int(p.name)
    return 0


def _stop_daemon(pid: int, rdir: str | None) -> bool:
    """Stop the daemon vlh started: by its recorded pid, else found by its socket path."""
    if not pid or not _pid_is_pulseaudio(pid):
        pid = _find_daemon(rdir)
    if not pid:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _pid_is_pulseaudio(pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


# ---- up / down / status -----------------------------------------------------------------------------------------
def up(sdir: str | os.PathLike | None = None, *, lease: str = CLI_LEASE, reuse_running: bool = True) -> dict:
    """Bring the loopback devices up (idempotent) and take `lease` on them. Returns the state.

    `reuse_running`: load the sinks into a PulseAudio server that already answers (the user's own), instead of
    starting a private daemon. Tests pass False so that concurrent sessions never share (and mix) devices.
    """
    sdir = state_dir(sdir)
    with _locked(sdir):
        st = read_state(sdir)
        st.setdefault("version", 1)
        st.setdefault("modules", {})
        st["leases"] = [x for x in st.get("leases", []) if lease_alive(x)]
        if lease not in st["leases"]:
            st["leases"].append(lease)
        _write_state(sdir, st)  # held from the start: a cleaner never takes half-made devices for abandoned ones
        server = st.get("server")
        if server and server_info(sdir, server) is None:
            log.info("loopback: server %s is gone; starting afresh", server)
            if st.get("started_daemon"):
                _stop_daemon(int(st.get("daemon_pid") or 0), st.get("runtime_dir"))
            st.update(server=None, started_daemon=False, daemon_pid=None, modules={})
            server = None
        if not server:
            info = server_info(sdir, None) if reuse_running else None
            if info is not None:
                server = _server_string(info)
                st.update(server=server, started_daemon=False, daemon_pid=None, runtime_dir=None)
                log.info("loopback: reusing the running PulseAudio server %s", server)
            else:
                server, pid, rdir = start_daemon(sdir)
                st.update(server=server, started_daemon=True, daemon_pid=pid, runtime_dir=rdir)
                log.info("loopback: started PulseAudio (pid %s) at %s", pid, server)
            _write_state(sdir, st)
        sinks = list_sinks(sdir, server)
        for name, desc in SINKS.items():
            if name in sinks:
                mine = st["modules"].get(name)
                if mine is not None and sinks[name].get("owner_module") != mine:
                    st["modules"].pop(name)  # recreated by someone else: not ours to remove
                continue
            args = ["load-module", "module-null-sink", f"sink_name={name}", f"rate={SAMPLE_RATE}", "channels=1",
                    "format=float32le", "norewinds=1", f"sink_properties=device.description={name}"]
            try:
                res = pactl(sdir, server, *args)
            except VlhError:  # a server without the norewinds option (e.g. PipeWire's pulse layer)
                log.warning("loopback: %s refused norewinds=1; loading %s without it", server, name)
                res = pactl(sdir, server, *[a for a in args if a != "norewinds=1"])
            st["modules"][name] = int(res.stdout.strip())
            _write_state(sdir, st)
        sinks = list_sinks(sdir, server)
        check_sinks(sinks, server)
        conf = sdir / ALSA_FILE
        text = alsa_conf_text(server)
        if not conf.exists() or conf.read_text() != text:
            conf.write_text(text)
        st["alsa_conf"] = str(conf)
        _write_state(sdir, st)
        return st


def check_sinks(sinks: dict[str, dict], server: str) -> None:
    """Both sinks exist at 48 kHz mono float — else a clear error naming the sink and the fix."""
    for name in SINKS:
        s = sinks.get(name)
        if s is None:
            raise VlhError(f"PulseAudio sink {name} is missing on {server}; run `vlh loopback up`")
        spec = str(s.get("sample_specification", ""))
        if f"{SAMPLE_RATE}Hz" not in spec.split():
            raise VlhError(f"PulseAudio sink {name} runs at {spec!r}, vlh needs {SAMPLE_RATE} Hz (sample-rate "
                           f"mismatch): unload it (`pactl unload-module {s.get('owner_module')}`) and run "
                           "`vlh loopback up` again")
        if spec != SAMPLE_SPEC:
            log.warning("PulseAudio sink %s is %r (vlh creates %r): the path is not bit-exact", name, spec,
                        SAMPLE_SPEC)


def down(sdir: str | os.PathLike | None = None, *, lease: str = CLI_LEASE, force: bool = False) -> dict:
    """Drop `lease`; when no live lease is left (or `force`), remove what `up()` created. Returns a summary:
    {"removed": [...], "kept_for": [leases still holding the devices]}."""
    sdir = state_dir(sdir)
    with _locked(sdir):
        st = read_state(sdir)
        if not st:
            return {"removed": [], "kept_for": [], "was_up": False}
        leases = [x for x in st.get("leases", []) if x != lease and lease_alive(x)]
        if leases and not force:
            st["leases"] = leases
            _write_state(sdir, st)
            return {"removed": [], "kept_for": leases, "was_up": True}
        removed = []
        server = st.get("server")
        alive = bool(server) and server_info(sdir, server) is not None
        if st.get("started_daemon"):
            if _stop_daemon(int(st.get("daemon_pid") or 0), st.get("runtime_dir")):
                removed.append(f"PulseAudio daemon (pid {st.get('daemon_pid')})")
        elif alive:
            sinks = list_sinks(sdir, server)
            for name, idx in st.get("modules", {}).items():
                if name in sinks and sinks[name].get("owner_module") == idx:
                    pactl(sdir, server, "unload-module", str(idx), check=False)
                    removed.append(f"null sink {name} (module {idx})")
        rdir = st.get("runtime_dir")
        if rdir and st.get("started_daemon"):
            shutil.rmtree(rdir, ignore_errors=True)
        for f in (ALSA_FILE, STATE_FILE, "client.conf"):
            with contextlib.suppress(FileNotFoundError):
                (sdir / f).unlink()
                if f == ALSA_FILE:
                    removed.append(str(sdir / f))
        return {"removed": removed, "kept_for": [], "was_up": True}


def status(sdir: str | os.PathLike | None = None) -> dict:
    """What is up: state, whether the server answers, the sinks as PulseAudio sees them."""
    sdir = state_dir(sdir)
    st = read_state(sdir)
    out = {"state_dir": str(sdir), "up": bool(st), "state": st, "server_alive": False, "sinks": {},
           "problems": []}
    if not st:
        return out
    server = st.get("server")
    if server and server_info(sdir, server) is not None:
        out["server_alive"] = True
        sinks = list_sinks(sdir, server)
        out["sinks"] = {n: {"spec": s.get("sample_specification"), "state": s.get("state"),
                            "latency_us": (s.get("latency") or {}).get("actual"), "module": s.get("owner_module")}
                        for n, s in sinks.items() if n in SINKS}
        try:
            check_sinks(sinks, server)
        except VlhError as exc:
            out["problems"].append(str(exc))
    else:
        out["problems"].append(f"PulseAudio server {server} does not answer (crashed?); run `vlh loopback down` "
                               "then `vlh loopback up`")
    dead = [x for x in st.get("leases", []) if not lease_alive(x)]
    if dead:
        out["problems"].append(f"leases of dead processes (cleared by the next up/down): {', '.join(dead)}")
    return out


def sink_latencies(sdir: str | os.PathLike | None = None) -> dict:
    """{sink: configured latency in ms} — a null sink renders blocks of this size, so its monitor delivers audio
    that much ahead of its clock; equal on both sinks, it cancels out of ch1 − ch0. Empty if unavailable."""
    sdir = state_dir(sdir)
    try:
        st = read_state(sdir)
        sinks = list_sinks(sdir, st["server"])
        return {n: round((sinks[n].get("latency") or {}).get("configured", 0.0) / 1e3, 3) for n in SINKS
                if n in sinks}
    except (VlhError, KeyError, TypeError):
        return {}


def foreign_streams(sdir: str | os.PathLike | None = None, own_pid: int | None = None) -> list[str]:
    """Streams of other processes on the loopback sinks or their monitors (e.g. a running agent)."""
    sdir = state_dir(sdir)
    own = str(os.getpid() if own_pid is None else own_pid)
    st = read_state(sdir)
    server = st.get("server")
    if not server:
        return []
    sinks = {s.get("index"): n for n, s in list_sinks(sdir, server).items() if n in SINKS}
    try:
        sources = {x["index"]: x["name"] for x in json.loads(pactl(sdir, server, "--format=json", "list", "sources")
                                                              .stdout or "[]") if x.get("name") in
                   {n + ".monitor" for n in SINKS}}
        ins = json.loads(pactl(sdir, server, "--format=json", "list", "sink-inputs").stdout or "[]")
        outs = json.loads(pactl(sdir, server, "--format=json", "list", "source-outputs").stdout or "[]")
    except (ValueError, KeyError, TypeError):
        return []
    found = []
    for kind, items, where in (("plays into", ins, sinks), ("records", outs, sources)):
        for x in items:
            dev = where.get(x.get(kind == "plays into" and "sink" or "source"))
            pid = str((x.get("properties") or {}).get("application.process.id", "?"))
            if dev and pid != own:
                name = (x.get("properties") or {}).get("application.process.binary", "?")
                found.append(f"{name} (pid {pid}) {kind} {dev}")
    return found


def ensure_ready(sdir: str | os.PathLike | None = None) -> dict:
    """Raise a clear error unless the devices are up and the server answers; returns the state."""
    sdir = state_dir(sdir)
    st = read_state(sdir)
    if not st:
        raise VlhError(f"the loopback devices are not up (no {sdir / STATE_FILE}); run `vlh loopback up`")
    server = st.get("server")
    if not server or server_info(sdir, server) is None:
        raise VlhError(f"PulseAudio is not running (server {server} does not answer); run `vlh loopback down` "
                       "and `vlh loopback up`")
    check_sinks(list_sinks(sdir, server), server)
    if not (sdir / ALSA_FILE).exists():
        raise VlhError(f"{sdir / ALSA_FILE} is missing; run `vlh loopback up`")
    return st


# ---- making the PCMs visible ------------------------------------------------------------------------------------
def child_env(sdir: str | os.PathLike | None = None, base: dict | None = None) -> dict:
    """Environment for another process that should see the devices: ALSA_CONFIG_PATH (the PCMs), PULSE_SERVER
    (plain PulseAudio clients: PULSE_SOURCE=vlh_mic.monitor / PULSE_SINK=vlh_ear pick the devices)."""
    sdir = state_dir(sdir)
    env = dict(os.environ if base is None else base)
    env["ALSA_CONFIG_PATH"] = alsa_config_path(sdir, env.get("ALSA_CONFIG_PATH"))
    st = read_state(sdir)
    if st.get("server"):
        env["PULSE_SERVER"] = st["server"]
    return env


def activate(sdir: str | os.PathLike | None = None) -> None:
    """Make the PCMs visible to sounddevice in this process (re-initialises PortAudio if it is loaded)."""
    sdir = state_dir(sdir)
    want = alsa_config_path(sdir)
    if os.environ.get("ALSA_CONFIG_PATH") == want and _pa_sees_devices():
        return
    os.environ["ALSA_CONFIG_PATH"] = want
    reinit_portaudio()


def _pa_sees_devices() -> bool:
    if "sounddevice" not in sys.modules:
        return True  # PortAudio will read the variable when sounddevice is imported
    import sounddevice as sd

    return any(d["name"] == DEVICES.mic_play for d in sd.query_devices())


def reinit_portaudio() -> None:
    """PortAudio enumerates devices once, at initialisation: re-read them (no stream may be open)."""
    if "sounddevice" not in sys.modules:
        return
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


def describe(st: dict) -> dict:
    """A JSON-able summary of a state for reports."""
    return {"server": st.get("server"), "started_daemon": st.get("started_daemon"),
            "daemon_pid": st.get("daemon_pid"), "devices": asdict(DEVICES), "leases": st.get("leases", [])}
