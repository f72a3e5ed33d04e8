"""Real speech for the agent's replies, sharpened so that the first voiced sample of every sentence is sample 0 of
its audio (known exactly), kept in memory per (text, voice, rate).

Who speaks (`tts_engine`): a synthesis engine of `harness.audio.synth` (espeak, flite, festival), or
`wav-dir:PATH`, recorded WAV files: a sentence is spoken by `PATH/<slug>.wav` when that file exists (the slug is
the sentence in lower case, words joined by '-': "We open at ten." → `we-open-at-ten.wav`); otherwise the n-th
distinct sentence without its own file gets the n-th WAV file in name order (cycling when there are fewer files).
The agent prepares its scripted replies in order at call start, so that order is the order of `responses`.

Synthesis runs in a worker thread and is started ahead of time (at call start for the scripted replies), so the
configured TTS time-to-first-byte is a pure wait, not the engine's own speed. If synthesis is not ready when the
wait is over, the agent waits for it and the truth log shows the longer, real value.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.agent.outgoing import to_int16
from harness.audio.synth import ENGINES, get_engine, load_utterance, sharpen, synthesize
from harness.errors import VlhError

log = logging.getLogger(__name__)

WAV_DIR = "wav-dir:"


def check_engine(spec: str) -> str:
    """A valid `tts_engine` (engine name in lower case, or `wav-dir:` + an absolute folder holding WAV files)."""
    spec = str(spec).strip()
    if spec.lower().startswith(WAV_DIR):
        folder = Path(spec[len(WAV_DIR):]).expanduser()
        if not folder.is_dir():
            raise ValueError(f"wav-dir: {folder} is not a folder")
        if not _wavs(folder):
            raise ValueError(f"wav-dir: {folder} holds no .wav files")
        return WAV_DIR + str(folder.resolve())
    if spec.lower() not in ENGINES:
        raise ValueError(f"unknown TTS engine (use {', '.join(ENGINES)} or wav-dir:PATH)")
    return spec.lower()


def _wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


def slug(text: str) -> str:
    """'We open at ten.' → 'we-open-at-ten' (the file name a recorded sentence may have)."""
    return "-".join(re.findall(r"[a-z0-9']+", text.lower())).replace("'", "")


class WavDir:
    """Recorded replies: a sentence's WAV by its slug, else by the order sentences are first asked for."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.files = _wavs(self.folder)
        self.by_slug = {p.stem.lower(): p for p in self.files}
        self.assigned: dict[str, Path] = {}
        self.n_by_order = 0

    def pick(self, text: str) -> Path:
        p = self.assigned.get(text)
        if p is None:
            p = self.by_slug.get(slug(text))
            if p is None:
                p = self.files[self.n_by_order % len(self.files)]
                self.n_by_order += 1
            self.assigned[text] = p
            log.info("wav-dir: %r is spoken by %s", text, p.name)
        return p


@dataclass(frozen=True)
class Speech:
    text: str
    pcm: np.ndarray  # int16 mono 48 kHz, sharpened
    first_voiced: int  # index of the first voiced sample in pcm (0 after sharpening)
    source_start: int  # where sharpen cut the raw synthesis (or recording)


class Tts:
    def __init__(self, voice: str | None = None, rate: int | None = None, cache_dir=None, engine: str = "espeak"):
        self.voice, self.rate, self.cache_dir = voice, rate, cache_dir
        self.engine = check_engine(engine)
        self.wav_dir = WavDir(self.engine[len(WAV_DIR):]) if self.engine.startswith(WAV_DIR) else None
        if self.wav_dir is None and voice is not None:
            get_engine(self.engine).resolve(voice)  # a bad voice fails at start, naming the engine's voices
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlh-tts")
        self._futures: dict[tuple, asyncio.Future] = {}

    def _make(self, text: str, voice, rate, wav: Path | None = None) -> Speech:
        if wav is not None:
            try:
                raw = load_utterance(wav)
            except VlhError as exc:
                raise VlhError(f"wav-dir reply for {text[:40]!r}: {exc}") from None
        else:
            raw = synthesize(text, voice=voice, rate=rate, cache_dir=self.cache_dir, engine=self.engine)
        audio, info = sharpen(raw)
        return Speech(text=text, pcm=to_int16(audio), first_voiced=int(info["start"]),
                      source_start=int(info["source_start"]))

    def prepare(self, text: str, voice: str | None = None, rate: int | None = None) -> asyncio.Future:
        """A future of the `Speech` for `text` (started now if not already known)."""
        voice = self.voice if voice is None else voice
        rate = self.rate if rate is None else rate
        key = (" ".join(text.split()), voice, rate)
        fut = self._futures.get(key)
        if fut is None or (fut.done() and fut.exception() is not None):
            wav = self.wav_dir.pick(key[0]) if self.wav_dir is not None else None
            loop = asyncio.get_running_loop()
            fut = asyncio.ensure_future(loop.run_in_executor(self._pool, self._make, key[0], voice, rate, wav))
            self._futures[key] = fut
        return fut

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
