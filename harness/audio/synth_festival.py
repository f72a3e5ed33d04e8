"""The Festival speech system through `text2wave`: any installed festvox voice (diphone, clunits, HTS), e.g.
`kal_diphone` (festvox-kallpc16k, 16 kHz) or `cmu_us_slt_arctic_hts` (festvox-us-slt-hts, 32 kHz).

Voices are found as `/usr/share/festival/voices/<language>/<voice>/festvox/`; a voice may be named by its full
directory name or its speaker part (`slt` → cmu_us_slt_arctic_hts, `kal` → kal_diphone). Rate: Festival's
`Duration_Stretch` is set to 175 / rate (175 = the voice's natural pace); HTS voices ignore that
parameter, so for them hts_engine's speed ratio (`-r`, rate / 175) is set instead.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from harness.audio.synth_cli import CliEngine, cli_output

VOICES_DIR = Path("/usr/share/festival/voices")


@lru_cache(maxsize=1)
def _version() -> str:
    m = re.search(r"System:\s*([\d.]+)", cli_output(["festival", "--version"]))
    return f"festival-{m.group(1)}" if m else "festival-unknown"


def _speaker(vid: str) -> str:
    """'cmu_us_slt_arctic_hts' → 'slt', 'kal_diphone' → 'kal'."""
    parts = vid.split("_")
    return parts[2] if vid.startswith("cmu_") and len(parts) > 2 else parts[0]


@lru_cache(maxsize=1)
def _voices() -> dict[str, str]:
    """voice directory name → its speaker's short name (both accepted as `voice:`)."""
    if not VOICES_DIR.is_dir():
        return {}
    found = sorted(p.parent.name for p in VOICES_DIR.glob("*/*/festvox") if p.is_dir())
    return {vid: _speaker(vid) for vid in found}


def _render(text: str, vid: str, rate: int, out) -> list[str]:
    hts = (f"(if (and (boundp 'hts_engine_params) hts_engine_params) (set! hts_engine_params "
           f"(append hts_engine_params (list (list \"-r\" {rate / 175:.6f})))))")
    return ["text2wave", "-eval", f"(voice_{vid})", "-eval", f"(Parameter.set 'Duration_Stretch {175 / rate:.6f})",
            "-eval", hts, "-o", str(out), _text_file(text, out)]


def _text_file(text: str, out: Path) -> str:
    """text2wave reads a file; write the text beside the output (same temporary directory)."""
    p = Path(out).with_suffix(".txt")
    p.write_text(text + "\n", encoding="utf-8")
    return str(p)


ENGINE = CliEngine(name="festival", program="text2wave", package="festival festvox-kallpc16k festvox-us-slt-hts",
                   version=_version, voices=_voices, default_voice="cmu_us_slt_arctic_hts", render=_render)
