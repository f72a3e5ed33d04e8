"""The paced reply track: 20 ms frames on an absolute schedule, sample-exact reply placement, the ledger."""

from __future__ import annotations

import numpy as np
import pytest

from agent_testclient import realtime  # noqa: F401 (realtime: autouse fixture)
from fractions import Fraction

from harness.agent.outgoing import FRAME, FrameLedger, OpusFrames, ReplyTrack, Segment, Stutter, to_int16


async def test_frames_follow_an_absolute_schedule():
    tr = ReplyTrack()
    packets = [await tr.recv() for _ in range(26)]
    infos = [tr.ledger._infos[k] for k in range(26)]
    t0 = infos[0].sched
    for k, info in enumerate(infos):
        assert info.sched == pytest.approx(t0 + k * 0.02, abs=1e-9)  # no accumulated drift
        assert info.produced >= info.sched
    assert infos[-1].produced - t0 == pytest.approx(0.5, abs=0.02)
    assert [p.pts for p in packets] == [k * FRAME for k in range(26)]
    assert all(p.time_base == Fraction(1, 48000) for p in packets)
    # silence: encoded until it is steady, then the same packet is reused
    assert tr._opus.encoded == OpusFrames.QUIET and tr._opus.reused == 26 - OpusFrames.QUIET
    assert len({bytes(p) for p in packets[OpusFrames.QUIET - 1:]}) == 1
    tr.stop()


async def test_reply_samples_land_exactly_and_are_marked():
    tr = ReplyTrack()
    await tr.next_pcm()  # frame 0: silence
    pcm = (np.arange(3000) % 200 + 1).astype(np.int16)
    tr.enqueue(Segment(turn=7, pcm=pcm, first_voiced=350, first=True, last=False))
    tr.enqueue(Segment(turn=7, pcm=np.full(100, 5, np.int16), last=True))
    got = [await tr.next_pcm() for _ in range(5)]
    audio = np.concatenate([a for a, _ in got])
    assert np.array_equal(audio[:3000], pcm) and np.all(audio[3000:3100] == 5) and not np.any(audio[3100:])
    i1 = got[0][1]
    assert i1.index == 1 and i1.parts[0].reply_start and i1.parts[0].first_voiced_offset == 350
    assert i1.parts[0].offset == 0
    i4 = got[3][1]  # samples 2880…3839 of the reply: the end of segment 1 and all of segment 2
    assert [p.count for p in i4.parts] == [120, 100] and i4.parts[1].reply_end and not i4.parts[0].reply_end
    assert not tr.busy
    tr.stop()


async def test_first_voiced_sample_in_a_later_frame_and_clear():
    tr = ReplyTrack()
    tr.enqueue(Segment(turn=1, pcm=np.ones(5000, np.int16), first_voiced=2500, first=True, last=True))
    (_, i0), (_, i1) = await tr.next_pcm(), await tr.next_pcm()
    assert i1.parts[0].first_voiced_offset is None
    _, i2 = await tr.next_pcm()
    assert i2.parts[0].first_voiced_offset == 2500 - 2 * FRAME
    cut = tr.clear(1)
    assert cut == 5000 - 3 * FRAME and not tr.busy
    a, _ = await tr.next_pcm()
    assert not np.any(a)
    tr.stop()


def test_own_encoding_is_aiortcs_with_the_same_delay():
    """The track's packets decode like aiortc's own pipeline: a noise burst after silence reuse lands 312 samples late
    (Opus pre-skip), exactly as the sender's encoder would have put it."""
    from aiortc.codecs.opus import OpusDecoder
    from aiortc.jitterbuffer import JitterFrame

    enc, dec = OpusFrames(), OpusDecoder()
    frames = [np.zeros(FRAME, np.int16) for _ in range(10)]
    burst = (np.random.default_rng(1).standard_normal(FRAME * 5) * 4000).astype(np.int16)  # no periodicity
    frames += [burst[k * FRAME:(k + 1) * FRAME] for k in range(5)]
    out = []
    for k, f in enumerate(frames):
        p = enc.encode(f, k)
        out += [fr.to_ndarray().reshape(-1, 2)[:, 0] for fr in dec.decode(JitterFrame(bytes(p), p.pts))]
    y = np.concatenate(out).astype(np.float64)
    assert enc.reused > 0
    ref = burst[:2000].astype(np.float64)
    lag = int(np.argmax(np.correlate(y[9 * FRAME:], ref, mode="valid"))) + 9 * FRAME
    assert lag - 10 * FRAME == 312


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
