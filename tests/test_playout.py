"""The playout emulator on real Opus packets: delays, jitter adaptation, loss concealment, codec delay."""

import fractions

import av
import numpy as np
import pandas as pd
import pytest

from harness.transports.webrtc.playout import FRAME, PlayoutEmulator, _OpusDecoder, _quantile, parse_jitter_mode
from harness.errors import VlhError

SR = 48000


def _encode(x: np.ndarray) -> list[bytes]:
    from aiortc.codecs.opus import OpusEncoder

    enc = OpusEncoder()
    out = []
    pcm = np.clip(x * 32768, -32768, 32767).astype(np.int16)
    for i in range(len(pcm) // FRAME):
        f = av.AudioFrame.from_ndarray(pcm[i * FRAME:(i + 1) * FRAME].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = SR, i * FRAME, fractions.Fraction(1, SR)
        payloads, _ = enc.encode(f)
        out.extend(payloads)
    return out


def _signal(seconds=6.0, onset_s=3.0 + 0.0071):
    n = int(seconds * SR)
    x = np.zeros(n, np.float32)
    k = int(onset_s * SR)
    t = np.arange(n - k) / SR
    x[k:] = 0.3 * np.sin(2 * np.pi * 300 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    return x, k


def _run(delays, payloads, mode="adaptive", t_send0=50.0, drop=None, seq0=65500, ts0=4294960000):
    emu = PlayoutEmulator(mode)
    ear = np.zeros(int((len(payloads) * 0.02 + 3) * SR), np.float32)
    emu.on_frame = lambda t, pcm, level: ear.__setitem__(slice(int(round((t - t_send0) * SR)),
                                                        int(round((t - t_send0) * SR)) + FRAME), pcm)
    events = []
    for i, p in enumerate(payloads):
        if drop is not None and drop[i]:
            continue
        events.append((t_send0 + i * 0.02 + delays[i], i, p))
    events.sort()
    for arrival, i, p in events:
        emu.advance(arrival - 1e-9)
        emu.push((seq0 + i) % 65536, (ts0 + i * FRAME) % 2 ** 32, arrival, p)
    last = max(a for a, _, _ in events)
    emu.advance(last + emu.target_delay)
    return emu, ear


def test_constant_delay_plays_20ms_after_arrival_and_keeps_codec_delay():
    x, k = _signal()
    payloads = _encode(x)
    emu, ear = _run(np.full(len(payloads), 0.030), payloads)
    played = [tk for tk in emu.ticks if tk.kind == "play"]
    waits = np.array([tk.t - tk.arrival for tk in played])
    assert np.allclose(waits, 0.020, atol=1e-6)
    assert emu.counts["conceal"] == emu.counts["expand"] == 0
    # onset at the ear = send + 30 ms network + 20 ms buffer + 312 samples of Opus delay
    onset = int(np.argmax(np.abs(ear) > 0.02))
    want = k + int(0.050 * SR) + 312
    assert abs(onset - want) <= 24, (onset, want)  # ±0.5 ms


def test_adaptive_delay_grows_with_jitter_and_loss_is_concealed_without_stall():
    x, _ = _signal(seconds=20.0, onset_s=1.0)
    payloads = _encode(x)
    rng = np.random.default_rng(7)
    delays = np.clip(0.040 + rng.uniform(-0.015, 0.015, len(payloads)), 0, None)
    drop = rng.random(len(payloads)) < 0.02
    emu, _ = _run(delays, payloads, drop=drop)
    assert emu.target_delay > 0.025  # grew from the 20 ms floor
    assert emu.counts["conceal"] >= 0.5 * drop.sum()
    played = [tk for tk in emu.ticks if tk.kind == "play"]
    late = [tk.t - tk.arrival for tk in played[len(played) // 2:]]
    assert np.median(late) > 0.012  # the buffer holds packets to absorb jitter
    # no stall: never more than 100 ms of consecutive non-played frames
    run = longest = 0
    for tk in emu.ticks:
        run = run + 1 if tk.kind != "play" else 0
        longest = max(longest, run)
    assert longest * 20 <= 100


def test_fixed_mode_keeps_its_delay():
    x, _ = _signal(seconds=4.0, onset_s=1.0)
    payloads = _encode(x)
    emu, _ = _run(np.full(len(payloads), 0.01), payloads, mode="fixed:60")
    waits = [tk.t - tk.arrival for tk in emu.ticks if tk.kind == "play"]
    assert np.allclose(waits, 0.060, atol=1e-6)


def test_reordered_packets_play_in_sequence():
    x, _ = _signal(seconds=2.0, onset_s=0.5)
    payloads = _encode(x)
    delays = np.full(len(payloads), 0.02)
    delays[30] = 0.035  # arrives after packet 31
    emu, _ = _run(delays, payloads, mode="fixed:40")
    seqs = [tk.seq for tk in emu.ticks if tk.kind == "play"]
    assert seqs == sorted(seqs) and len(seqs) == len(payloads)


def test_bad_mode_is_a_clear_error():
    assert parse_jitter_mode("fixed:60") == ("fixed", 0.06)
    with pytest.raises(VlhError, match="fixed:<ms>"):
        parse_jitter_mode("elastic")


def test_quantile_is_numpys():
    rng = np.random.default_rng(3)
    for n in (2, 3, 7, 50, 101, 500):
        x = rng.exponential(0.01, n)
        for q in (0.0, 0.5, 0.95, 1.0):
            assert _quantile(x, q) == pytest.approx(float(np.quantile(x, q)), abs=1e-15)


def test_silence_shortcut_decodes_the_same_audio():
    """Skipping the decode of repeated silence packets must not change a sample of what follows them."""
    x, _ = _signal(seconds=3.0, onset_s=1.5 + 0.0071)
    payloads = _encode(x)
    shortcut, full = _OpusDecoder(), _OpusDecoder()
    full.decode = full._decode  # no shortcut
    decoded = []
    real = shortcut._decode
    shortcut._decode = lambda p, ts: decoded.append(ts) or real(p, ts)
    a = np.concatenate([shortcut.decode(p, i * FRAME) for i, p in enumerate(payloads)])
    b = np.concatenate([full.decode(p, i * FRAME) for i, p in enumerate(payloads)])
    assert len(decoded) < len(payloads) - 50  # the shortcut was taken for most of the 1.5 s of silence …
    assert np.array_equal(a, b)  # … and changed nothing
    assert np.abs(b[int(1.6 * SR):]).max() > 0.1  # the tone is there


def test_compact_tick_log_reads_like_the_ticks_and_answers_the_same_queries():
    """The per-frame log is typed arrays (issue 19.3): each frame reads back as the Tick it was, the Parquet log
    is those Ticks, and the vectorised stats_between counts what a plain loop over the Ticks counts."""
    x, _ = _signal(8.0)
    payloads = _encode(x)
    rng = np.random.default_rng(5)
    delays = 0.03 + rng.exponential(0.02, len(payloads))
    drop = rng.random(len(payloads)) < 0.08
    emu, _ = _run(delays, payloads, drop=drop)
    ticks = list(emu.ticks)
    assert len(ticks) == len(emu.ticks) > 300 and emu.ticks[5] == ticks[5]
    kinds = {t.kind for t in ticks}
    assert {"play", "conceal", "expand"} <= kinds, kinds
    assert any(t.rtp_ts is None for t in ticks) and any(t.arrival is None for t in ticks)  # the nulls round-trip
    assert emu.ticks.nbytes == 33 * len(ticks)
    df = emu.log_frame()
    assert list(df["kind"]) == [t.kind for t in ticks]
    assert list(df["t_mono"]) == [t.t for t in ticks] and list(df["level"]) == [t.level for t in ticks]
    for col, attr in (("seq", "seq"), ("rtp_ts", "rtp_ts")):
        assert [None if v is pd.NA else int(v) for v in df[col]] == [getattr(t, attr) for t in ticks]
    assert [None if v is pd.NA else int(v) for v in df["seq16"]] == [
        None if t.seq is None else t.seq & 0xFFFF for t in ticks]
    assert [None if np.isnan(v) else v for v in df["arrival_mono"]] == [t.arrival for t in ticks]
    assert str(df["seq"].dtype) == "Int64"

    def by_loop(t_a, t_b):
        out, run = {"conceal": 0, "expand": 0, "longest_gap": 0}, 0
        for tk in ticks:
            if t_a <= tk.t < t_b:
                if tk.kind in ("conceal", "expand"):
                    out[tk.kind] += 1
                    run += 1
                    out["longest_gap"] = max(out["longest_gap"], run)
                else:
                    run = 0
        return out

    t0, t1 = ticks[0].t, ticks[-1].t
    edges = [t0 - 1, t0, ticks[7].t, ticks[7].t + 0.001, (t0 + t1) / 2, t1, t1 + 1] + list(
        rng.uniform(t0 - 0.5, t1 + 0.5, 20))
    for a in edges:
        for b in edges:
            assert emu.stats_between(a, b) == by_loop(a, b), (a, b)
