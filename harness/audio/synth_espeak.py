"""espeak-ng through its CLI (`espeak-ng -w out.wav`): 22 050 Hz, rate in words per minute (80–1000 honoured)."""

from __future__ import annotations

from functools import lru_cache

from harness.audio.synth_cli import CliEngine, cli_output


@lru_cache(maxsize=1)
def _version() -> str:
    out = cli_output(["espeak-ng", "--version"]).split()
    # "eSpeak NG text-to-speech: 1.51  Data at: ..." → "espeak-ng-1.51"
    return f"espeak-ng-{out[3]}" if len(out) > 3 else "espeak-ng-unknown"


@lru_cache(maxsize=1)
def _voices() -> dict[str, str]:
    """voice id (e.g. 'gmw/en-us') → name ('English (America)'), from `espeak-ng --voices`."""
    known = {}
    for line in cli_output(["espeak-ng", "--voices"]).splitlines()[1:]:
        # Pty Language       Age/Gender VoiceName          File                 Other Languages
        parts = line.split()
        if len(parts) >= 5:
            known[parts[4].lower()] = parts[3].replace("_", " ")
    return known


def _render(text: str, vid: str, rate: int, out) -> list[str]:
    return ["espeak-ng", "-v", vid, "-s", str(rate), "-w", str(out), "--", text]


ENGINE = CliEngine(name="espeak", program="espeak-ng", package="espeak-ng", version=_version, voices=_voices,
                   default_voice="gmw/en", render=_render)
