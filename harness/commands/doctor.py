"""`vlh doctor`: are the system parts vlh needs installed? Prints one line per part and, for what is missing, the
exact apt line that installs it (Debian/Ubuntu package names, as in scripts/setup.sh). Exit 0: all there; 1: not.

Checked without starting anything: espeak-ng (the program and libespeak-ng, which synthesises every utterance),
PortAudio (libportaudio, the sound-device path), PulseAudio (the daemon, pactl and ALSA's pulse plugin: vlh's
loopback devices) and Chromium (the report's browser tests and screenshots).
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import shutil
import sys
from dataclasses import dataclass


@dataclass
class Check:
    part: str
    what: str
    found: str | None  # where it was found, None when missing
    apt: str  # the Debian package that provides it


def _program(*names: str) -> str | None:
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def _library(name: str) -> str | None:
    return ctypes.util.find_library(name)


def _alsa_pulse_plugin() -> str | None:
    hits = glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") + \
        glob.glob("/usr/lib/alsa-lib/libasound_module_pcm_pulse.so")
    return hits[0] if hits else None


def checks() -> list[Check]:
    """Every system part, in the order `scripts/setup.sh` installs them."""
    return [
        Check("espeak-ng", "program espeak-ng", _program("espeak-ng"), "espeak-ng"),
        Check("espeak-ng", "library libespeak-ng", _library("espeak-ng"), "espeak-ng"),
        Check("PortAudio", "library libportaudio", _library("portaudio"), "libportaudio2"),
        Check("PulseAudio", "program pulseaudio", _program("pulseaudio"), "pulseaudio"),
        Check("PulseAudio", "program pactl", _program("pactl"), "pulseaudio-utils"),
        Check("PulseAudio", "ALSA pulse plugin", _alsa_pulse_plugin(), "libasound2-plugins"),
        Check("Chromium", "program chromium", _program("chromium", "chromium-browser"), "chromium"),
    ]


def apt_line(results: list[Check]) -> str | None:
    """`sudo apt-get update && sudo apt-get install -y …` for the missing parts (None when nothing is missing)."""
    pkgs = list(dict.fromkeys(c.apt for c in results if not c.found))
    if not pkgs:
        return None
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {' '.join(pkgs)}"


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check the system parts vlh needs (espeak-ng, PortAudio, PulseAudio, "
                       "Chromium) and print the apt line for what is missing",
                       description=__doc__.split("\n\n")[0] + " Exit 0: all present; 1: something is missing.")
    p.set_defaults(func=run)


def run(args) -> int:
    results = checks()
    width = max(len(f"{c.part}: {c.what}") for c in results)
    for c in results:
        label = f"{c.part}: {c.what}"
        print(f"{'ok' if c.found else 'MISSING':<7} {label:<{width}}  {c.found or '(apt package ' + c.apt + ')'}")
    line = apt_line(results)
    if line:
        print(f"vlh doctor: missing system parts; install them with:\n  {line}", file=sys.stdout)
        return 1
    print("vlh doctor: every system part is there")
    return 0
