"""CMU flite through its CLI (`flite -voice V -t TEXT -o out.wav`): 16 kHz; voices kal, kal16, awb, rms, slt, ….

Rate: flite has no words-per-minute setting; its `duration_stretch` is set to 175 / rate, so 175 is the voice's
natural pace and 350 is twice as fast.
"""

from __future__ import annotations

import re
from functools import lru_cache

from harness.audio.synth_cli import CliEngine, cli_output


@lru_cache(maxsize=1)
def _version() -> str:
    m = re.search(r"version:\s*(\S+)", cli_output(["flite", "--version"]))
    return m.group(1) if m else "flite-unknown"


@lru_cache(maxsize=1)
def _voices() -> dict[str, str]:
    """voice name → description, from `flite -lv` ("Voices available: kal awb_time kal16 awb rms slt")."""
    out = cli_output(["flite", "-lv"])
    names = out.split(":", 1)[1].split() if ":" in out else []
    return {n: f"flite {n}" for n in names}


def _render(text: str, vid: str, rate: int, out) -> list[str]:
    return ["flite", "-voice", vid, "--setf", f"duration_stretch={175 / rate:.6f}", "-t", text, "-o", str(out)]


ENGINE = CliEngine(name="flite", program="flite", package="flite", version=_version, voices=_voices,
                   default_voice="slt", render=_render)
