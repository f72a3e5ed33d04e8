"""The versions that decide what vlh measures: vlh itself and the libraries whose behaviour (or internals) it relies
on — aiortc and aioice (hooked RTP/ICE paths), av (Opus), webrtcvad (speech boundaries), numpy/scipy/pandas.

Read from the installed distributions' metadata (nothing is imported), for `vlh --version` and run.json `versions`.
"""

from __future__ import annotations

import argparse
import platform
from importlib import metadata

from harness import __version__

#: name shown → distribution names to try (the first installed one wins)
LIBRARIES = {
    "aiortc": ("aiortc",),
    "aioice": ("aioice",),
    "av": ("av",),
    "webrtcvad": ("webrtcvad-wheels", "webrtcvad"),
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "pandas": ("pandas",),
}
#: the ones `vlh --version` prints
SHOWN = ("aiortc", "aioice", "av", "webrtcvad", "numpy")


def library_version(name: str) -> str | None:
    """The installed version of one of `LIBRARIES` (None when it is not installed)."""
    for dist in LIBRARIES[name]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict:
    """{"vlh", "python", and each installed library: version}."""
    out = {"vlh": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        v = library_version(name)
        if v is not None:
            out[name] = v
    return out


def version_line() -> str:
    """`vlh 0.1.0 (Python 3.11.2; aiortc 1.16.0, aioice 0.13.0, av 18.1.0, webrtcvad 2.0.14, numpy 2.4.6)`."""
    v = versions()
    libs = ", ".join(f"{n} {v.get(n, 'not installed')}" for n in SHOWN)
    return f"vlh {v['vlh']} (Python {v['python']}; {libs})"


class VersionAction(argparse.Action):
    """`--version`: prints `version_line()` unwrapped (argparse's own version action wraps it) and exits."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()
