"""The agent's pipeline end to end over real aiortc on loopback: the truth log against the configuration,
against what the test client received, and against the audio itself."""

from __future__ import annotations

import numpy as np
import pytest

from agent_testclient import FRAME, agent_process, converse, opus_roundtrip, realtime, speech  # noqa: F401 (realtime: autouse fixture)
from harness.agent.call import AUDIBLE
from harness.agent.config import AgentConfig
from harness.agent.server import AgentServer

OPUS_DELAY = 312  # samples: aiortc's Opus encode+decode keeps the 6.5 ms pre-skip (measured, common notes)
TOL_MS = 5.0

REPLY = "Hello there. How are you today?"


@pytest.fixture(scope="module")
def utterance():
    return speech("Hello, can you hear me?")


def ear_position(client, rtp_ts: int) -> int:
    return (rtp_ts - client.first_ts) & 0xFFFFFFFF


def locate(ear: np.ndarray, ref: np.ndarray, around: int, radius: int = 4000) -> int:
    """Where `ref` starts in `ear`, by cross-correlation near `around`."""
    lo = max(0, around - radius)
    win = ear[lo:around + radius + len(ref)]
    cc = np.correlate(win, ref, mode="valid")
    return lo + int(np.argmax(cc))


async def test_truth_stage_durations_equal_the_configuration(utterance, tmp_path):
    """The agent as `vlh run` starts it (a subprocess at its own priority); the client is this process."""
    from harness.agent.tts import Tts

    flags = ["--endpoint-hangover-ms", "250", "--stt-delay-ms", "60", "--llm-dispatch-ms", "15",
             "--llm-ttft-ms", "150", "--reasoning-ms", "120", "--token-interval-ms", "8", "--tts-ttfb-ms", "50",
             "--reply-leading-silence-ms", "7.3", "--net-delay-ms", "30", "--in-delay-ms", "0", "--response", REPLY,
             "--transcript", "can you hear me"]
    tts = Tts()
    first_sentence = (await tts.prepare("Hello there.")).pcm.astype(np.float32) / 32768
    tts.close()
    async with agent_process(tmp_path, *flags, packet_log=True) as (url, truth, _proc):
        c, turns, frames = await converse(url, truth, [utterance])
    ins = truth.packets_of(c.pc_id, "in")
    assert len(turns) == 1
    t = turns[0]
    assert t["status"] == "ok" and t["turn"] == 1
    assert t["transcript"] == "can you hear me" and t["reply_text"] == REPLY
    d = t["durations_ms"]
    expected = {"endpointing": 250, "stt": 60, "llm_dispatch": 15, "llm_ttft": 150, "reasoning": 120,
                "aggregation": 8, "tts_ttfb": 50}  # aggregation: "Hello there." completes at the 2nd word
    for stage, ms in expected.items():
        assert d[stage] == pytest.approx(ms, abs=TOL_MS), (stage, d, t["lateness_ms"])
    assert t["audio_first_injected_delay_ms"] == 30.0 and d["network"] == 30.0
    assert (t["audio_first_wire"] - t["audio_first_sent"]) * 1000 == pytest.approx(30.0, abs=TOL_MS)
    # the reply starts on a frame boundary; 7.3 ms of leading silence = 350 samples put its voice mid-packet
    assert t["reply_leading_silence_samples"] == 350
    assert t["reply_first_voiced_sample"] == 350
    assert t["first_voiced_offset_samples"] == 350
    assert t["reply_start_seq"] == t["audio_first_sent_seq"]
    # the agent's output stage: at most one 20 ms frame slot between the audio being ready and its packet
    assert 0 <= d["agent_output"] <= 20 + TOL_MS

    # the client really received that packet 30 ms after the truth's send time
    arrival = c.arrivals[t["audio_first_sent_seq"]]
    assert (arrival - t["audio_first_sent"]) * 1000 == pytest.approx(30.0, abs=TOL_MS)

    # ... and the reply's first voiced sample is where the truth says, in the decoded audio (+ Opus delay)
    ear = c.ear_audio()
    expect = ear_position(c, t["audio_first_sent_rtp_ts"]) + t["first_voiced_offset_samples"] + OPUS_DELAY
    found = locate(ear, first_sentence[:4800], expect)
    assert abs(found - expect) <= 2, (found, expect)
    reply = ear[expect:expect + t["reply_samples"] - 350]
    assert np.sqrt(np.mean(reply ** 2)) > 0.02  # spoken audio came back

    # mic side: the VAD's first/last voiced packets and the last audible sample, mapped to the client's frames
    ts0 = ins[0]["rtp_ts"]
    start_frame, end_frame = frames[0]
    assert (t["user_speech_start_rtp_ts"] - ts0) // FRAME in range(start_frame, start_frame + 3)
    last_vad = (t["last_voiced_mic_rtp_ts"] - ts0) // FRAME
    assert end_frame - 2 <= last_vad <= end_frame + 8  # webrtcvad's own hangover keeps it voiced a little longer
    # the last audible (> −50 dBFS) decoded sample: where aiortc's own Opus round trip of the utterance puts it
    decoded = opus_roundtrip(utterance)
    expect_last = start_frame * FRAME + int(np.flatnonzero(np.abs(decoded.astype(np.int32)) > AUDIBLE)[-1])
    last_sample = (t["last_audible_mic_rtp_ts"] - ts0) + t["last_audible_mic_offset"]
    assert abs(last_sample - expect_last) <= 2, (last_sample, expect_last)
    assert expect_last - (start_frame * FRAME + len(utterance)) >= OPUS_DELAY  # (the codec delays, never advances)
    # every mic packet was stamped on arrival (no jitter-buffer prefetch): arrival − client hand-off is small
    lat = [p["arrival"] - c.mic.frame_times[(p["rtp_ts"] - ts0) // FRAME] for p in ins]
    assert np.median(lat) * 1000 < 10.0


async def test_turns_cycle_scripts_and_events_follow_the_pipeline(utterance):
    cfg = AgentConfig(endpoint_hangover_ms=200, stt_delay_ms=20, llm_ttft_ms=60, token_interval_ms=5,
                      tts_ttfb_ms=20, responses=["One. Two.", "Three."], transcripts=["a", "b"])
    short = speech("Hello there")
    async with AgentServer(cfg, port=0) as srv:
        await srv.warm()
        c, turns, _ = await converse(srv.url, srv.truth, [short, short, short])
    assert [t["turn"] for t in turns] == [1, 2, 3]
    assert [t["reply_text"] for t in turns] == ["One. Two.", "Three.", "One. Two."]
    assert [t["transcript"] for t in turns] == ["a", "b", "a"]
    names = ["user_speech_end_detected", "stt_final", "llm_request", "llm_first_token",
             "llm_first_visible_token", "tts_request", "tts_first_audio", "audio_first_sent"]
    for t in turns:
        assert t["status"] == "ok"
        stamps = [t[n] for n in names]
        assert stamps == sorted(stamps), t
        assert t["user_speech_start_arrival"] < t["last_voiced_mic_arrival"] < t["user_speech_end_detected"]
        assert t["audio_first_sent"] <= t["reply_end_sent"]
        got = [e["name"] for e in c.events() if e["turn"] == t["turn"]]
        assert got == names
    assert turns[0]["sentences"] == ["One.", "Two."]


async def test_barge_in_stops_the_reply(utterance):
    long_reply = "This is a long answer that keeps going for quite a while so that you can interrupt it."
    # a long hangover: a client stalled by a busy machine must not split its own utterance into two turns
    cfg = AgentConfig(endpoint_hangover_ms=500, stt_delay_ms=20, llm_ttft_ms=50, token_interval_ms=2,
                      tts_ttfb_ms=20, responses=[long_reply, "Okay."])
    async with AgentServer(cfg, port=0) as srv:
        await srv.warm()
        from agent_testclient import AgentTestClient, wait_for

        c = AgentTestClient(srv.url)
        await c.connect()
        try:
            c.mic.play(utterance)
            await wait_for(lambda: c.rtvi("bot-started-speaking"), 15)
            import asyncio

            await asyncio.sleep(0.5)
            c.mic.play(utterance)  # talk over the agent
            await wait_for(lambda: len(srv.truth.turns_of(c.pc_id)) >= 2, 15)
        finally:
            await c.close()
        turns = srv.truth.turns_of(c.pc_id)
    first, second = turns[0], turns[1]
    assert first["status"] == "interrupted"
    b = first["barge_in"]
    assert b["by_turn"] == 2 and b["while"] == "playing" and b["samples_cut"] > 48000
    # the reply's audio stopped within one frame slot of the barge-in being detected (+ the frame in flight)
    assert 0 <= b["audio_stopped_sent"] - b["detected"] <= 0.045
    assert first["reply_end_sent"] <= b["audio_stopped_sent"]
    assert second["status"] == "ok" and second["reply_text"] == "Okay."
    assert c.rtvi("bot-interrupted")


async def test_stutter_gaps_are_inserted_and_logged(utterance):
    cfg = AgentConfig(endpoint_hangover_ms=200, stt_delay_ms=20, llm_ttft_ms=50, tts_ttfb_ms=20,
                      stutter_gap_ms=100, stutter_every_ms=300, responses=["Hello there, how are you doing today?"])
    async with AgentServer(cfg, port=0) as srv:
        await srv.warm()
        c, turns, _ = await converse(srv.url, srv.truth, [utterance], pause_s=0.5)
    t = turns[0]
    gaps = t["stutter_gaps"]
    assert len(gaps) >= 3
    assert all(g[1] == 4800 for g in gaps)
    # gap k starts after (k+1)·300 ms of reply audio plus the k earlier gaps
    assert [g[0] for g in gaps] == [(k + 1) * 14400 + k * 4800 for k in range(len(gaps))]
    ear = c.ear_audio()
    start = ear_position(c, t["audio_first_sent_rtp_ts"]) + t["first_voiced_offset_samples"] + OPUS_DELAY
    for g0, n in gaps:
        mid = ear[start + g0 + 960: start + g0 + n - 960]  # inside the gap, away from codec smear
        assert np.max(np.abs(mid)) < 0.01


async def test_agent_workers_queue_turns_beyond_their_number():
    """`workers_per_agent` / `turn_cpu_ms`: two workers, four turns of 100 ms at once → two wait one turn's work."""
    import asyncio

    from harness.agent.call import AgentWorkers

    pool = AgentWorkers(2)
    waits = sorted(await asyncio.gather(*(pool.work(0.1) for _ in range(4))))
    assert waits[0] < 5 and waits[1] < 5
    assert 95 <= waits[2] <= 130 and 95 <= waits[3] <= 130
    assert await AgentWorkers(0).work(0.01) == 0.0  # 0 = unlimited: no queue
