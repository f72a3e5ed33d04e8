"""Agent profiles: YAML mappings of knob: value. Built-ins live in `harness/agent/profiles/<name>.yaml`.

A profile may carry a `description:`; every other key must be an `AgentConfig` knob (checked by `config.py`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.errors import VlhError

PROFILE_DIR = Path(__file__).with_name("profiles")


def builtin_profiles() -> dict[str, str]:
    """name → description of every built-in profile."""
    out = {}
    for p in sorted(PROFILE_DIR.glob("*.yaml")):
        data = yaml.safe_load(p.read_text()) or {}
        out[p.stem] = str(data.get("description", "")).strip()
    return out


def profile_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise VlhError(f"profile file {name_or_path} does not exist; give a YAML file or one of: "
                           + ", ".join(builtin_profiles()))
        return p
    builtin = PROFILE_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise VlhError(f"unknown agent profile {name_or_path!r}; built-in profiles: "
                       + ", ".join(builtin_profiles()) + " (or give a .yaml file)")
    return builtin


def load_profile(name_or_path: str) -> dict:
    """The profile's knobs as a dict (without `description`)."""
    path = profile_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise VlhError(f"profile {path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise VlhError(f"profile {path}: cannot read it ({exc.strerror})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise VlhError(f"profile {path}: expected a mapping of knob: value at the top level")
    data = dict(data)
    data.pop("description", None)
    return data
