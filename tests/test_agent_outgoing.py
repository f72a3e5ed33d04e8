"""The paced reply track: 20 ms frames on an absolute schedule, sample-exact reply placement, the ledger."""

from __future__ import annotations

import numpy as np
import pytest

from agent_testclient import realtime  # noqa: F401 (realtime: autouse fixture)
from harness.agent.outgoing import FRAME, FrameLedger, ReplyTrack, Segment, Stutter, to_int16


async def test_frames_follow_an_absolute_schedule():
    tr = ReplyTrack()
    frames = [await tr.recv() for _ in range(26)]
    infos = [tr.ledger._infos[k] for k in range(26)]
    t0 = infos[0].sched
    for k, info in enumerate(infos):
        assert info.sched == pytest.approx(t0 + k * 0.02, abs=1e-9)  # no accumulated drift
        assert info.produced >= info.sched
    assert infos[-1].produced - t0 == pytest.approx(0.5, abs=0.02)
    assert all(f.samples == FRAME and f.sample_rate == 48000 for f in frames)
    assert [f.pts for f in frames] == [k * FRAME for k in range(26)]
    assert all(not np.any(f.to_ndarray()) for f in frames)  # silence when nothing is queued
    tr.stop()


async def test_reply_samples_land_exactly_and_are_marked():
    tr = ReplyTrack()
    await tr.recv()  # frame 0: silence
    pcm = (np.arange(3000) % 200 + 1).astype(np.int16)
    tr.enqueue(Segment(turn=7, pcm=pcm, first_voiced=350, first=True, last=False))
    tr.enqueue(Segment(turn=7, pcm=np.full(100, 5, np.int16), last=True))
    got = [await tr.recv() for _ in range(5)]
    audio = np.concatenate([f.to_ndarray().reshape(-1) for f in got])
    assert np.array_equal(audio[:3000], pcm) and np.all(audio[3000:3100] == 5) and not np.any(audio[3100:])
    i1 = tr.ledger._infos[1]
    assert i1.parts[0].reply_start and i1.parts[0].first_voiced_offset == 350 and i1.parts[0].offset == 0
    i4 = tr.ledger._infos[4]  # samples 2880…3839 of the reply: the end of segment 1 and all of segment 2
    assert [p.count for p in i4.parts] == [120, 100] and i4.parts[1].reply_end and not i4.parts[0].reply_end
    assert not tr.busy
    tr.stop()


async def test_first_voiced_sample_in_a_later_frame_and_clear():
    tr = ReplyTrack()
    tr.enqueue(Segment(turn=1, pcm=np.ones(5000, np.int16), first_voiced=2500, first=True, last=True))
    await tr.recv(), await tr.recv()
    info = tr.ledger._infos[2 - 1]
    assert info.parts[0].first_voiced_offset is None
    await tr.recv()
    assert tr.ledger._infos[2].parts[0].first_voiced_offset == 2500 - 2 * FRAME
    cut = tr.clear(1)
    assert cut == 5000 - 3 * FRAME and not tr.busy
    f = await tr.recv()
    assert not np.any(f.to_ndarray())
    tr.stop()


def test_ledger_maps_rtp_timestamps_across_wraparound():
    from harness.agent.outgoing import FrameInfo

    led = FrameLedger()
    for k in range(4):
        led.add(FrameInfo(index=k, sched=k, produced=k))
    ts0 = 2**32 - FRAME
    assert led.info_for_rtp(ts0).index == 0
    assert led.info_for_rtp((ts0 + 2 * FRAME) % 2**32).index == 2
    assert led.info_for_rtp((ts0 + FRAME) % 2**32).index == 1
    assert led.info_for_rtp(ts0 + 5) is None and led.mismatches == 1


def test_stutter_inserts_gaps_and_moves_the_first_voiced_sample():
    st = Stutter(gap_ms=10, every_ms=20)  # 480-sample gaps after every 960 samples
    pcm = np.ones(2000, np.int16)
    out, fv = st.apply(pcm, first_voiced=1000)
    assert len(out) == 2000 + 2 * 480 and fv == 1000 + 480
    assert st.gaps == [[960, 480], [960 + 480 + 960, 480]]
    assert not np.any(out[960:1440]) and np.all(out[:960] == 1)
    out2, _ = st.apply(np.ones(1000, np.int16))  # the count carries over to the next segment of the reply
    assert len(out2) == 1000 + 480 and st.gaps[-1][0] == len(out) + 880  # 80 + 880 = 960 samples of audio
    off = Stutter(0, 0)
    same, fv = off.apply(pcm, 3)
    assert same is pcm and fv == 3


def test_to_int16_scales_and_clips():
    assert to_int16(np.array([0.0, 0.5, -1.0, 2.0])).tolist() == [0, 16384, -32767, 32767]
