"""harness.versions and `vlh --version`: the versions reported are the ones the imported modules say they are."""

import subprocess
import sys

import aioice
import aiortc
import av
import numpy

from harness import __version__
from harness.versions import version_line, versions


def test_versions_match_the_imported_modules():
    v = versions()
    assert v["vlh"] == __version__
    assert v["aiortc"] == aiortc.__version__ and v["av"] == av.__version__ and v["numpy"] == numpy.__version__
    assert v["aioice"] == aioice.__version__
    assert v["python"] == ".".join(map(str, sys.version_info[:3]))
    assert v["webrtcvad"]


def test_vlh_version_prints_one_line_with_the_libraries():
    out = subprocess.run([sys.executable, "-m", "harness", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line == version_line() and "\n" not in line
    for name in ("aiortc", "aioice", "av", "webrtcvad", "numpy"):
        assert f"{name} {versions()[name]}" in line
