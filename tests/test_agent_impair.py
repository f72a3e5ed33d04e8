"""Network impairment: the per-packet decisions, the transport hook, and the truth over real WebRTC."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from scipy import stats

from agent_testclient import converse, realtime, speech  # noqa: F401 (realtime: autouse fixture)
from harness.agent.config import AgentConfig
from harness.agent.impair import Impairment, ImpairmentSpec, is_rtcp, rtp_header, wrap_incoming, wrap_outgoing
from harness.agent.server import AgentServer


def draws(spec, n=50000, seed=1):
    imp = Impairment(spec, seed)
    d = [imp.decide() for _ in range(n)]
    return np.array([x[0] for x in d]), np.array([x[1] for x in d]) * 1000


def test_uniform_jitter_and_loss_statistics():
    dropped, delay = draws(ImpairmentSpec(40, 10, "uniform", 0.02))
    assert delay.min() >= 30 and delay.max() <= 50
    assert stats.kstest(delay, stats.uniform(30, 20).cdf).pvalue > 0.001
    assert dropped.mean() == pytest.approx(0.02, abs=0.003)


def test_normal_jitter_is_clipped_at_zero():
    _, delay = draws(ImpairmentSpec(40, 10, "normal", 0))
    assert delay.mean() == pytest.approx(40, abs=0.3) and delay.std() == pytest.approx(10, abs=0.3)
    _, delay = draws(ImpairmentSpec(5, 20, "normal", 0))
    assert delay.min() == 0 and (delay == 0).mean() == pytest.approx(stats.norm.cdf(-5 / 20), abs=0.01)


def test_seeded_and_inactive():
    a, b = draws(ImpairmentSpec(10, 5, "uniform", 0.1), 100, seed=7), draws(ImpairmentSpec(10, 5, "uniform", 0.1),
                                                                             100, seed=7)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    assert Impairment(ImpairmentSpec(), 0).decide() == (False, 0.0)


def rtp(seq, ts, pt=111):
    return bytes([0x80, pt]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + b"\x00\x00\x00\x01" + b"x" * 20


def test_rtp_header_and_rtcp_test():
    assert rtp_header(rtp(513, 99999)) == (513, 99999, 111)
    assert is_rtcp(bytes([0x80, 200]) + b"\x00" * 10) and not is_rtcp(rtp(1, 1))


class Transport:
    """Stands in for RTCDtlsTransport: records what reaches its `_send_rtp` and when."""

    def __init__(self):
        self.out = []

    async def _send_rtp(self, data):
        self.out.append((data, time.monotonic()))


async def test_outgoing_hook_delays_drops_and_passes_rtcp():
    tr = Transport()
    seen = []
    wrap_outgoing(tr, Impairment(ImpairmentSpec(30, 0, "uniform", 0.5), 3),
                  lambda data, t, d, dropped: seen.append((rtp_header(data)[0], t, d, dropped)))
    for seq in range(40):
        await tr._send_rtp(rtp(seq, seq * 960))
        await asyncio.sleep(0.005)  # paced, like a real sender (not one burst of 40 timers)
    n_before = len(tr.out)
    await tr._send_rtp(bytes([0x80, 201]) + b"\x00" * 10)  # RTCP: straight through, not logged
    assert len(seen) == 40 and len(tr.out) == n_before + 1 and is_rtcp(tr.out[-1][0])
    await asyncio.sleep(0.1)
    sent = {rtp_header(d)[0]: t for d, t in tr.out if not is_rtcp(d)}
    waits = []
    for seq, t, d, dropped in seen:
        assert d == pytest.approx(0.030)
        if dropped:
            assert seq not in sent
        else:
            waits.append((sent[seq] - t) * 1000)
    assert min(waits) >= 30.0  # never early
    assert np.median(waits) == pytest.approx(30, abs=2)
    assert 5 < sum(s[3] for s in seen) < 35


async def test_incoming_hook_reports_drops_and_delayed_arrivals():
    class Receiver:
        pass

    class Packet:
        def __init__(self, seq):
            self.sequence_number = seq

    got = []
    r = Receiver()
    wrap_incoming(r, Impairment(ImpairmentSpec(20, 0, "uniform", 0.3), 5),
                  lambda p, t_arr, t_wire, d: got.append((p.sequence_number, t_arr, t_wire, d)))
    for seq in range(30):
        await r._handle_rtp_packet(Packet(seq), 0)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.08)
    assert sorted(g[0] for g in got) == list(range(30))
    waits = [(t_arr - t_wire) * 1000 for _, t_arr, t_wire, _ in got if t_arr is not None]
    assert min(waits) >= 20.0 and np.median(waits) == pytest.approx(20, abs=2)
    assert any(g[1] is None for g in got)


async def test_jitter_and_loss_in_the_packet_truth_over_webrtc():
    """40 ms ± 10 ms uniform jitter and 2 % loss on the agent's outgoing RTP, checked against the client."""
    cfg = AgentConfig(endpoint_hangover_ms=200, stt_delay_ms=20, llm_ttft_ms=50, tts_ttfb_ms=20, seed=11,
                      net_delay_ms=40, net_jitter_ms=10, net_jitter_dist="uniform", net_loss=0.02,
                      responses=["This reply is long enough to give the test a few hundred packets to look at."])
    async with AgentServer(cfg, port=0) as srv:
        await srv.warm()
        c, turns, _ = await converse(srv.url, srv.truth, [speech("Hello there")], pause_s=0.3)
        out = srv.truth.packets_of(c.pc_id, "out")
    assert len(out) > 250
    delay = np.array([p["delay_ms"] for p in out])
    dropped = np.array([p["dropped"] for p in out])
    assert delay.min() >= 30 and delay.max() <= 50
    assert stats.kstest(delay, stats.uniform(30, 20).cdf).pvalue > 0.001
    # ~2 %: a two-sided binomial test at the 0.1 % level (can fail for a wrong loss rate, e.g. 0 % or 5 %)
    assert stats.binomtest(int(dropped.sum()), len(dropped), 0.02).pvalue > 0.001
    assert dropped.sum() >= 1
    # what the truth says was dropped never reached the client; the rest arrived send + delay later
    late, wire_late = [], []
    for p in out[:-5]:  # the last few may still be in flight when the client closed
        if p["dropped"]:
            assert p["seq"] not in c.arrivals and p["wire"] is None
        else:
            late.append((c.arrivals[p["seq"]] - p["send"]) * 1000 - p["delay_ms"])
            wire_late.append((p["wire"] - p["send"]) * 1000 - p["delay_ms"])
            assert c.arrivals[p["seq"]] >= p["wire_start"]  # it left in [wire_start, wire]
    assert min(wire_late) >= 0  # never sent before its delay was over
    assert np.median(wire_late) < 2.0  # … and on time, typically
    assert np.median(late) < 3.0 and min(late) > -0.5
    t = turns[0]
    assert t["audio_first_injected_delay_ms"] == next(p["delay_ms"] for p in out if p["seq"] ==
                                                       t["audio_first_sent_seq"])


async def test_incoming_delay_over_webrtc():
    cfg = AgentConfig(endpoint_hangover_ms=200, stt_delay_ms=20, llm_ttft_ms=50, tts_ttfb_ms=20, in_delay_ms=25,
                      responses=["Okay."])
    async with AgentServer(cfg, port=0) as srv:
        await srv.warm()
        c, turns, frames = await converse(srv.url, srv.truth, [speech("Hello there")])
        ins = srv.truth.packets_of(c.pc_id, "in")
    assert turns and all(p["delay_ms"] == 25.0 and not p["dropped"] for p in ins)
    assert all((p["arrival"] - p["wire"]) * 1000 >= 25 for p in ins)  # never early
    assert np.median([(p["arrival"] - p["wire"]) * 1000 for p in ins]) == pytest.approx(25, abs=2)
