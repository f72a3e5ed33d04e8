"""Endpointing on received audio: real webrtcvad on real espeak speech, hangover on the arrival clock."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from agent_testclient import realtime, speech  # noqa: F401 (realtime: autouse fixture)
from harness.agent.endpoint import Endpointer, PacketRef
from harness.agent.outgoing import to_int16

FRAME = 960


def packets(audio_int16: np.ndarray):
    n = int(np.ceil(len(audio_int16) / FRAME))
    pad = np.zeros(n * FRAME, np.int16)
    pad[: len(audio_int16)] = audio_int16
    return [pad[k * FRAME:(k + 1) * FRAME] for k in range(n)]


@pytest.fixture(scope="module")
def words():
    return to_int16(speech("Hello there"))


async def run(ep_kwargs, signal, *, wait_s):
    """Feed `signal` as 20 ms packets that 'arrived' back to back, the last one just now."""
    starts, ends = [], []
    ep = Endpointer(on_start=lambda f, t: starts.append((f, t)), on_end=lambda f, l, t: ends.append((f, l, t)),
                    **ep_kwargs)
    pk = packets(signal)
    base = time.monotonic() - len(pk) * 0.02
    for k, p in enumerate(pk):
        ep.feed(p, PacketRef(base + k * 0.02, k, k * FRAME))
    await asyncio.sleep(wait_s)
    ep.close()
    return starts, ends


async def test_one_utterance_one_turn_hangover_on_arrival(words):
    lead = np.zeros(10 * FRAME, np.int16)
    sig = np.concatenate([lead, words, np.zeros(5 * FRAME, np.int16)])
    starts, ends = await run(dict(hangover_ms=400, speech_start_ms=60), sig, wait_s=0.6)
    assert len(starts) == 1 and len(ends) == 1
    first, last, t_detected = ends[0]
    assert first.seq in (10, 11, 12)  # speech starts at packet 10
    end_pkt = (len(lead) + len(words) - 1) // FRAME
    assert end_pkt <= last.seq <= end_pkt + 8  # webrtcvad keeps a few frames of its own hangover
    assert (t_detected - last.arrival) * 1000 == pytest.approx(400, abs=5)


async def test_a_pause_shorter_than_the_hangover_stays_in_the_turn(words):
    gap = np.zeros(10 * FRAME, np.int16)  # 200 ms
    sig = np.concatenate([gap, words, gap, words, gap])
    _, ends = await run(dict(hangover_ms=350), sig, wait_s=0.5)
    assert len(ends) == 1
    # … and a pause longer than it splits the speech into two turns
    long_gap = np.zeros(40 * FRAME, np.int16)  # 800 ms
    sig = np.concatenate([gap, words, long_gap, words, gap])
    _, ends = await run(dict(hangover_ms=300), sig, wait_s=0.5)
    assert len(ends) == 2


async def test_short_clicks_do_not_start_a_turn(words):
    click = words[: 2 * FRAME]  # 40 ms of speech-like audio (webrtcvad's own hangover adds a few frames)
    sig = np.concatenate([np.zeros(5 * FRAME, np.int16), click, np.zeros(20 * FRAME, np.int16)])
    starts, ends = await run(dict(hangover_ms=100, speech_start_ms=200), sig, wait_s=0.2)
    assert starts == [] and ends == []
    starts, ends = await run(dict(hangover_ms=100, speech_start_ms=20), sig, wait_s=0.2)
    assert len(starts) == 1 and len(ends) == 1  # with a 20 ms minimum the same click is a turn


async def test_silence_never_starts_a_turn():
    starts, _ = await run(dict(hangover_ms=100), np.zeros(50 * FRAME, np.int16), wait_s=0.05)
    assert starts == []


async def test_other_vad_frame_lengths(words):
    sig = np.concatenate([np.zeros(10 * FRAME, np.int16), words, np.zeros(10 * FRAME, np.int16)])
    for ms in (10, 30):
        starts, ends = await run(dict(hangover_ms=200, frame_ms=ms), sig, wait_s=0.3)
        assert len(starts) == 1 and len(ends) == 1, ms
