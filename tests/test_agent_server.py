"""Signalling, bad input, idle and vanished clients, and many concurrent calls."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from agent_testclient import (AgentTestClient, agent_process, converse, realtime, speech,  # noqa: F401
                              wait_for)
from harness.agent.config import AgentConfig
from harness.agent.server import AgentServer

QUICK = dict(endpoint_hangover_ms=200, stt_delay_ms=20, llm_ttft_ms=50, token_interval_ms=5, tts_ttfb_ms=20,
             responses=["Okay."])


async def offer_sdp(audio: bool = True, datachannel: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if audio:
        pc.addTransceiver("audio", direction="sendrecv")
    if datachannel:
        pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def only_pcmu(sdp: str) -> str:
    """Keep only PCMU (payload 0) in the audio m-line."""
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("m=audio"):
            parts = line.split(" ")
            line = " ".join(parts[:3] + ["0"])
        elif re.match(r"a=(rtpmap|fmtp|rtcp-fb):(\d+)", line) and not re.match(r"a=(rtpmap|fmtp|rtcp-fb):0\b", line):
            continue
        out.append(line)
    return "\r\n".join(out)


async def post(session, url, method="POST", **kw):
    async with session.request(method, url, **kw) as r:
        return r.status, await r.json()


async def test_bad_offers_get_a_clear_400_and_the_server_keeps_serving():
    async with AgentServer(AgentConfig(**QUICK), port=0) as srv:
        await srv.warm()
        url = f"{srv.url}/api/offer"
        good = await offer_sdp()
        async with aiohttp.ClientSession() as s:
            cases = [
                (dict(data=b"{not json"), "not JSON"),
                (dict(json=[1, 2]), "JSON object"),
                (dict(json={"type": "offer"}), "missing \"sdp\""),
                (dict(json={"sdp": good, "type": "answer"}), "\"type\" must be \"offer\""),
                (dict(json={"sdp": "hello", "type": "offer"}), "no media section"),
                (dict(json={"sdp": "v=0\r\nm=audio abc UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"}),
                 "cannot be parsed"),
                (dict(json={"sdp": "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n",
                            "type": "offer"}), "refused by WebRTC"),
                (dict(json={"sdp": await offer_sdp(audio=False), "type": "offer"}), "no audio m-line"),
                (dict(json={"sdp": only_pcmu(good), "type": "offer"}), "no Opus 48 kHz"),
                (dict(json={"sdp": good, "type": "offer", "request_data": {"config": {"stt_delay_ms": -5}}}),
                 "request_data.config: stt_delay_ms"),
                (dict(json={"sdp": good, "type": "offer", "request_data": {"config": {"bogus_knob": 1}}}),
                 "bogus_knob: unknown key"),
                (dict(json={"sdp": good, "type": "offer", "requestData": {"config": {"clock_offset_ms": 5}}}),
                 "clock_offset_ms"),
                (dict(json={"sdp": good, "type": "offer", "request_data": "x"}), "request_data"),
            ]
            for kw, needle in cases:
                status, body = await post(s, url, **kw)
                assert status == 400, (needle, body)
                assert needle in body["error"], (needle, body)
            status, body = await post(s, url, method="PATCH", json={"pc_id": "nope", "candidates": []})
            assert status == 404 and "nope" in body["error"]
            status, body = await post(s, url, method="PATCH", data=b"[")
            assert status == 400
            async with s.get(f"{srv.url}/health") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
        assert srv.calls == {}
        # a good call afterwards is served normally, with its per-call overrides
        c, turns, _ = await converse(srv.url, srv.truth, [speech("Hello there")],
                                     request_data={"config": {"responses": ["Per call."], "stt_delay_ms": 33}})
        assert turns[0]["status"] == "ok" and turns[0]["reply_text"] == "Per call."
        assert turns[0]["config"]["stt_delay_ms"] == 33
        assert turns[0]["durations_ms"]["stt"] == pytest.approx(33, abs=5)


async def test_trickled_candidates_and_renegotiation_are_accepted():
    async with AgentServer(AgentConfig(**QUICK), port=0) as srv:
        c = AgentTestClient(srv.url)
        await c.connect()
        try:
            async with aiohttp.ClientSession() as s:
                cand = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdp_mid": "0",
                        "sdp_mline_index": 0}
                status, body = await post(s, f"{srv.url}/api/offer", method="PATCH",
                                          json={"pc_id": c.pc_id, "candidates": [cand]})
                assert status == 200 and body == {"status": "success"}
                status, body = await post(s, f"{srv.url}/api/offer", method="PATCH",
                                          json={"pc_id": c.pc_id, "candidates": [{"candidate": "junk"}]})
                assert status == 400
                await c.pc.setLocalDescription(await c.pc.createOffer())
                status, body = await post(s, f"{srv.url}/api/offer", json={
                    "sdp": c.pc.localDescription.sdp, "type": "offer", "pc_id": c.pc_id})
                assert status == 200 and body["pc_id"] == c.pc_id and body["type"] == "answer"
            assert len(srv.calls) == 1
        finally:
            await c.close()


async def test_silent_and_vanished_clients_are_closed_and_logged():
    async with AgentServer(AgentConfig(idle_timeout_s=1.0, **QUICK), port=0) as srv:
        # a client that negotiates but never sends audio
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="recvonly")
        pc.createDataChannel("chat")
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as s:
            status, ans = await post(s, f"{srv.url}/api/offer",
                                     json={"sdp": pc.localDescription.sdp, "type": "offer"})
        assert status == 200
        # a client that talks, then vanishes without a goodbye: its packets stop reaching the agent
        c = AgentTestClient(srv.url)
        await c.connect()
        await asyncio.sleep(0.3)
        dtls = c.pc.getTransceivers()[0].sender.transport

        async def black_hole(data):
            return None

        dtls._send_rtp = black_hole
        dtls._send_data = black_hole
        await wait_for(lambda: len(srv.truth.calls) >= 4, 8)
        ends = {r["call"]: r for r in srv.truth.calls if r["event"] == "end"}
        assert set(ends) == {ans["pc_id"], c.pc_id}
        for r in ends.values():
            assert "no incoming audio" in r["reason"]
        assert ends[c.pc_id]["rx_packets"] > 5 and ends[ans["pc_id"]]["rx_packets"] == 0
        assert srv.calls == {}
        await pc.close()
        await c.close()


async def test_ten_concurrent_calls_in_real_time(tmp_path):
    """10 calls at once against a `vlh agent` process: every reply starts when its truth says it does."""
    # a long hangover: a client process stalled by a busy machine must not split "Hello there" in two turns
    flags = ["--endpoint-hangover-ms", "500", "--stt-delay-ms", "40", "--llm-ttft-ms", "120",
             "--token-interval-ms", "5", "--tts-ttfb-ms", "40", "--net-delay-ms", "15",
             "--response", "Sure, here you go."]
    u = speech("Hello there")
    async with agent_process(tmp_path, *flags) as (url, truth, _proc):
        async def one(k):
            await asyncio.sleep(0.05 * k)
            return await converse(url, truth, [u], timeout=40)

        results = await asyncio.gather(*(one(k) for k in range(10)))
        await wait_for(lambda: len([r for r in truth.calls if r["event"] == "end"]) == 10, 15)  # clients closed
        calls = truth.calls
    assert len({c.pc_id for c, _, _ in results}) == 10
    lates, outputs = [], []
    for c, turns, _ in results:
        assert len(turns) == 1 and turns[0]["status"] == "ok", turns
        t = turns[0]
        # the client got the reply's first voiced packet when the truth says: send + injected delay
        arrival = c.arrivals[t["audio_first_sent_seq"]]
        lates.append((arrival - t["audio_first_sent"]) * 1000 - t["audio_first_injected_delay_ms"])
        # the datagram left between the two wire stamps; the client (an unstamped loop read) can only see it after
        assert t["audio_first_sent"] + 0.015 <= t["audio_first_wire_start"] <= t["audio_first_wire"]
        assert t["audio_first_wire_start"] <= arrival
        outputs.append(t["durations_ms"]["agent_output"])
        ear = c.ear_audio()
        assert np.sqrt(np.mean(ear ** 2)) > 0.005  # each client heard its reply
    wire = [(t["audio_first_wire"] - t["audio_first_sent"]) * 1000 - t["audio_first_injected_delay_ms"]
            for _, (t,), _ in results]
    assert max(lates) <= 20.0, ("client arrival late by", lates, "agent wire late by", wire)
    assert min(lates) >= 0.0
    assert max(outputs) <= 20.0 + 5.0, outputs  # audio ready → its packet within one frame slot
    ends = [r for r in calls if r["event"] == "end"]
    assert len(ends) == 10 and all(r["ledger_mismatches"] == 0 for r in ends)
