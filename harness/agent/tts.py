"""Real TTS audio for the agent: espeak-ng through `harness.audio.synth`, sharpened so that the first voiced
sample of every sentence is sample 0 of its audio (known exactly), kept in memory per (text, voice, rate).

Synthesis runs in a worker thread and is started ahead of time (at call start for the scripted replies), so the
configured TTS time-to-first-byte is a pure wait, not espeak's own speed. If synthesis is not ready when the wait
is over, the agent waits for it and the truth log shows the longer, real value.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from harness.agent.outgoing import to_int16
from harness.audio.synth import sharpen, synthesize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Speech:
    text: str
    pcm: np.ndarray  # int16 mono 48 kHz, sharpened
    first_voiced: int  # index of the first voiced sample in pcm (0 after sharpening)
    source_start: int  # where sharpen cut the raw synthesis


class Tts:
    def __init__(self, voice: str | None = None, rate: int | None = None, cache_dir=None):
        self.voice, self.rate, self.cache_dir = voice, rate, cache_dir
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlh-tts")
        self._futures: dict[tuple, asyncio.Future] = {}

    def _make(self, text: str, voice, rate) -> Speech:
        raw = synthesize(text, voice=voice, rate=rate, cache_dir=self.cache_dir)
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
            loop = asyncio.get_running_loop()
            fut = asyncio.ensure_future(loop.run_in_executor(self._pool, self._make, key[0], voice, rate))
            self._futures[key] = fut
        return fut

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
