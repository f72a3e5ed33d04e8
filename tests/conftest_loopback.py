"""Loopback sound devices for the tests that need them (import the fixtures into a test module).

    from conftest_loopback import loopback, loopback_calibration  # noqa: F401 (fixtures)

`loopback` brings up private devices once per test process: vlh's own PulseAudio daemon (never the user's) in a
temporary state directory, so concurrent test sessions never share — and mix audio on — the same sinks. It is torn
down when the last module using it finishes; a crashed session's leftovers (dead leases) are cleaned by the next.
`loopback_calibration` runs the 20-repetition calibration once on those devices and stores it there.
CI has no sound card and no daemon: this starts PulseAudio itself.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness.devices import pulse

PREFIX = "vlh-loopback-test-"
_shared = {"users": 0, "dir": None, "lease": None, "env": None, "alsa": None, "cal": None}


def _clean_stale() -> None:
    """Remove what crashed sessions left behind — never a live session's devices (other test sessions may run
    at the same time): `down` with a lease nobody holds tears down only when no live lease is left, under the
    state's lock."""
    for d in map(Path, glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*"))):
        try:
            if not (d / pulse.STATE_FILE).exists():
                if time.time() - d.stat().st_mtime > 600:  # died before its devices were made
                    shutil.rmtree(d, ignore_errors=True)
                continue
            res = pulse.down(d, lease="reaper")
            if not res["kept_for"] and not (d / pulse.STATE_FILE).exists():
                shutil.rmtree(d, ignore_errors=True)
        except Exception:
            continue


def _acquire() -> Path:
    if _shared["users"] == 0:
        _clean_stale()
        d = Path(tempfile.mkdtemp(prefix=PREFIX))
        lease = pulse.process_lease(tag="pytest")
        pulse.up(d, lease=lease, reuse_running=False)
        _shared.update(dir=d, lease=lease, env=os.environ.get("VLH_STATE_DIR"),
                       alsa=os.environ.get("ALSA_CONFIG_PATH"))
        pulse.activate(d)
        os.environ["VLH_STATE_DIR"] = str(d)
    _shared["users"] += 1
    return _shared["dir"]


def _release() -> None:
    _shared["users"] -= 1
    if _shared["users"] > 0:
        return
    d = _shared["dir"]
    try:
        pulse.down(d, lease=_shared["lease"])
    finally:
        for var, key in (("VLH_STATE_DIR", "env"), ("ALSA_CONFIG_PATH", "alsa")):
            if _shared[key] is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = _shared[key]
        pulse.reinit_portaudio()
        shutil.rmtree(d, ignore_errors=True)
        _shared.update(dir=None, lease=None, cal=None)


@pytest.fixture(scope="session")
def loopback():
    """The state directory of private, running loopback devices (VLH_STATE_DIR points at it meanwhile)."""
    d = _acquire()
    try:
        yield d
    finally:
        _release()


@pytest.fixture(scope="session")
def loopback_calibration(loopback):
    """The 20-repetition calibration of the loopback devices (stored in their state directory)."""
    if _shared["cal"] is None:
        from harness.transports.loopback.calibrate import calibrate

        _shared["cal"] = asyncio.run(calibrate(reps=20, state_dir=loopback))
    return _shared["cal"]
