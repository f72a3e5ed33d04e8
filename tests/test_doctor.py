"""`vlh doctor`: finds the system parts on this machine, and names the exact apt line when programs are missing
(a real subprocess with an empty PATH: the programs really cannot be found)."""

import re
import subprocess
import sys
from pathlib import Path

from harness.commands.doctor import apt_line, checks

REPO = Path(__file__).resolve().parents[1]


def test_every_part_is_found_on_the_test_machine():
    missing = [f"{c.part}: {c.what}" for c in checks() if not c.found]
    assert not missing  # make setup installed them (scripts/setup.sh APT_PKGS)
    out = subprocess.run([sys.executable, "-m", "harness", "doctor"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "every system part is there" in out.stdout


def test_missing_programs_give_the_exact_apt_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "harness", "doctor"], capture_output=True, text=True, timeout=60,
                         env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"apt-get update && (sudo )?apt-get install -y espeak-ng pulseaudio pulseaudio-utils "
                     r"chromium$", out.stdout.strip()), out.stdout
    assert "MISSING espeak-ng: program espeak-ng" in out.stdout


def test_apt_packages_are_the_ones_setup_installs():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    apt_pkgs = set(re.search(r'^APT_PKGS="([^"]*)"', setup, re.M).group(1).split())
    assert {c.apt for c in checks()} <= apt_pkgs
    assert apt_line(checks()) is None
