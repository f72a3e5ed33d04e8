"""One text-to-speech engine behind its command-line program: the shared shape of `synth_espeak`, `synth_flite`
and `synth_festival`.

An engine names its voices, resolves what a user typed to one voice id, and renders text with that voice at a
rate (words per minute, 175 = the engine's natural pace) into a WAV file through its CLI. Calling the CLI (not a
library binding that keeps state between calls) is what makes the output depend only on the text, the voice, the
rate and the installed engine: the same inputs give byte-identical samples on every run.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.audio.wavio import read_wav
from harness.errors import VlhError

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CliEngine:
    name: str  # what users write: --tts-engine NAME, `engine: NAME`
    program: str  # the CLI that must be on PATH
    package: str  # the Debian package(s) that install it
    version: Callable[[], str]  # the engine's version string (part of the cache key)
    voices: Callable[[], dict[str, str]]  # voice id → description
    default_voice: str
    render: Callable[[str, str, int, Path], list[str]]  # (text, voice id, rate, out.wav) → argv

    def available(self) -> bool:
        return shutil.which(self.program) is not None

    def resolve(self, voice: str | None) -> str:
        """A voice id from an id, its last path part ('en-us' for 'gmw/en-us'), or a name (case-insensitive)."""
        if voice is None:
            return self.default_voice
        known = self.voices()
        want = voice.strip().lower()
        for vid, name in known.items():
            if want in (vid.lower(), vid.split("/")[-1].lower(), name.lower()):
                return vid
        raise VlhError(f"voice {voice!r}: {self.name} has no such voice (it has: {self.voice_list()})")

    def voice_list(self, limit: int = 30) -> str:
        ids = sorted(self.voices())
        if self.name == "espeak":  # 100+ languages: the English ones are the useful hint
            ids = [v for v in ids if v.split("/")[-1].startswith("en")]
        return ", ".join(v.split("/")[-1] for v in ids[:limit]) + (" …" if len(ids) > limit else "")

    def run(self, text: str, vid: str, rate: int) -> tuple[np.ndarray, int]:
        """Render `text` → (float32 mono samples, sample rate)."""
        if not self.available():
            raise VlhError(f"TTS engine {self.name}: `{self.program}` is not installed "
                           f"(run: sudo apt-get install {self.package})")
        with tempfile.TemporaryDirectory(prefix=f"vlh-{self.name}-") as tmp:
            out = Path(tmp) / "u.wav"
            argv = self.render(text, vid, rate, out)
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S, text=True,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise VlhError(f"TTS engine {self.name} took over {TIMEOUT_S:.0f} s for {text[:40]!r}") from None
            if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
                err = (proc.stderr or proc.stdout or "").strip().splitlines()
                raise VlhError(f"TTS engine {self.name} (voice {vid}) wrote no audio for {text[:40]!r}"
                               f"{': ' + err[-1] if err else ''}")
            audio, sr = read_wav(out)
        if audio.ndim != 1:
            audio = audio.mean(axis=1, dtype=np.float32)
        return audio, sr


def cli_output(argv: list[str]) -> str:
    """stdout+stderr of a short informational CLI call ('' when the program is missing)."""
    if shutil.which(argv[0]) is None:
        return ""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (p.stdout or "") + (p.stderr or "")
