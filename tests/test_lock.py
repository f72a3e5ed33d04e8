"""requirements-lock.txt says what pyproject.toml asks for: made from this pyproject (recorded SHA-256), every
dependency (runtime and test) pinned exactly, with hashes, at a version inside pyproject's range — and that is what
is installed here (scripts/setup.sh installs the lock)."""

import hashlib
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements-lock.txt"


def pins() -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", LOCK.read_text(), re.M)}


def requirements() -> list[Requirement]:
    p = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in p["dependencies"] + p["optional-dependencies"]["test"]]


def test_lock_was_made_from_this_pyproject():
    recorded = re.search(r"^# pyproject-sha256: ([0-9a-f]{64})$", LOCK.read_text(), re.M).group(1)
    assert recorded == hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest(), "run make lock"


def test_every_dependency_is_pinned_inside_its_range_with_hashes():
    pinned = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in the lock"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{req.name}=={pinned[name]} not in {req.specifier}"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 3)[3])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b)


def test_installed_versions_are_the_locked_ones():
    pinned = pins()
    for name in ("aiortc", "aioice", "av", "numpy", "webrtcvad-wheels"):
        assert metadata.version(name) == pinned[canonicalize_name(name)], name
