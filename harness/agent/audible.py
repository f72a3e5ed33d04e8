"""Where the agent's own audio last was audible before a barge-in stopped it — the truth for interruption latency.

The agent decodes its outgoing stream itself: a decoder of its own (aiortc's Opus decoder, the same library a
client uses) fed every media packet it hands to the transport, in order, from the call's first packet. So the
decoded audio is what a listener hears — Opus's 312-sample delay and the decoder's fading tail after a hard cut
included — computed from the agent's own packets, never from vlh's capture.

**Audibility criterion** (fixed; docs/agent.md "Ground truth"): low-pass the decoded reply at 4 kHz (the band vlh's
boundaries and webrtcvad look at); the reference is the reply's loudest 10 ms (the maximum of a sliding 10 ms RMS
over the decoded reply, from its first packet to the end of the search); a sample is audible when its magnitude
exceeds the reference minus `AUDIBLE_DB` (45 dB) — vlh's boundary refinement counts a sample as speech when it
stands above 45 dB under the speech's peak (its variance floor) and out of the channel's noise, and in the digital
silence an agent sends after a barge-in that is the same test. The last audible sample is searched in the decoded
frames from the reply's first packet through `TAIL_FRAMES` frames after the stop packet (the decoder tail of a loud
cut lasts ≈ 15 ms past the cut; no other reply audio is in those frames, or the search stops before it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from harness.audio import SAMPLE_RATE as SR
from harness.audio.settled import SettledSilence

FRAME = 960
AUDIBLE_DB = -45.0  # audible: within 45 dB of the reply's loudest 10 ms
TAIL_FRAMES = 3  # decoded frames after the stop packet searched for the decoder's tail (60 ms)


@lru_cache(maxsize=1)
def _lowpass() -> np.ndarray:
    from scipy.signal import firwin

    return firwin(2 * 17 + 1, 4000.0, fs=SR, window="blackman")  # linear phase, ±0.35 ms


def last_audible(pcm: np.ndarray, search_end: int | None = None, db: float = AUDIBLE_DB) -> tuple[int | None, float]:
    """Index of the last audible sample of `pcm` (the decoded reply, int16 or float) before `search_end`, and the
    reference level (the loudest 10 ms RMS, full scale = 1). (None, ref) if nothing is audible."""
    a = np.asarray(pcm)
    x = a.astype(np.float64) / 32768.0 if a.dtype == np.int16 else a.astype(np.float64)
    end = len(x) if search_end is None else min(len(x), int(search_end))
    if end <= 0:
        return None, 0.0
    y = np.convolve(x[:end], _lowpass(), mode="same")
    w = SR // 100
    if len(y) >= w:
        c = np.concatenate([[0.0], np.cumsum(y * y)])
        ref = float(np.sqrt(max(float(np.max(c[w:] - c[:-w])), 0.0) / w))
    else:
        ref = float(np.sqrt(np.mean(y * y)))
    if ref <= 0.0:
        return None, 0.0
    hit = np.flatnonzero(np.abs(y) > ref * 10 ** (db / 20))
    return (int(hit[-1]) if len(hit) else None), ref


class OutgoingDecoder:
    """aiortc's Opus decoder on the agent's outgoing packets (mono int16 out). Once the same silent packet has
    decoded to zeros `SETTLE` times in a row (harness/audio/settled.py), further copies give zeros without decoding (an idle agent
    sends one silence packet 50 times a second)."""

    def __init__(self):
        from aiortc.codecs.opus import OpusDecoder

        self._dec = OpusDecoder()
        self._silence = SettledSilence()

    def decode(self, payload: bytes, ts: int) -> np.ndarray:
        if self._silence.known(payload):
            return np.zeros(FRAME, np.int16)
        from aiortc.jitterbuffer import JitterFrame

        try:
            frames = self._dec.decode(JitterFrame(data=payload, timestamp=ts & 0xFFFFFFFF))
        except Exception:
            frames = []
        parts = [f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0] for f in frames]
        pcm = np.concatenate(parts).astype(np.int16) if parts else np.zeros(FRAME, np.int16)
        if len(pcm) != FRAME:
            pcm = np.resize(pcm, FRAME) if len(pcm) > FRAME else np.concatenate([pcm, np.zeros(FRAME - len(pcm),
                                                                                              np.int16)])
        self._silence.saw(payload, not pcm.any())
        return pcm


@dataclass
class _Reply:
    seqs: list = field(default_factory=list)
    rtp: list = field(default_factory=list)
    raw: list = field(default_factory=list)  # decoded frames not yet filtered (+ the one before, for context)
    y: list = field(default_factory=list)  # the decoded frames low-passed at 4 kHz (one behind: the FIR looks ahead)
    carry: np.ndarray = field(default_factory=lambda: np.zeros(0))  # last 479 squared samples of y
    sq_max: float = 0.0  # the loudest 10 ms so far, as a sum of squares
    other: list = field(default_factory=list)  # per frame: offset of another reply's first sample in it, or None
    stop_at: int | None = None  # index in frames of the stop packet

    @property
    def n(self) -> int:
        return len(self.seqs)

    def filter_next(self, ahead: np.ndarray | None) -> None:
        """Low-pass the next unfiltered frame (context: the frame before it and `ahead`, zeros where there is none:
        np.convolve(whole, h, "same") exactly) and fold its 10 ms windows into `sq_max`."""
        h = _lowpass()
        half = len(h) // 2
        j = len(self.y)
        cur = self.raw[-2] if ahead is not None else self.raw[-1]
        before = self.raw[-3][-half:] if ahead is not None and len(self.raw) >= 3 else (
            self.raw[-2][-half:] if ahead is None and len(self.raw) >= 2 else np.zeros(half))
        if j == 0:
            before = np.zeros(half)
        after = ahead[:half] if ahead is not None else np.zeros(half)
        seg = np.concatenate([before, cur, after]).astype(np.float64) / 32768.0
        y = np.convolve(seg, h, mode="valid")
        self.y.append(y)
        z = np.concatenate([self.carry, y * y])
        w = SR // 100
        if len(z) >= w:
            c = np.concatenate([[0.0], np.cumsum(z)])
            self.sq_max = max(self.sq_max, float(np.max(c[w:] - c[:-w])))
        self.carry = z[-(w - 1):]
        del self.raw[:-2]


class AudibleTracker:
    """Decodes every outgoing packet; follows each reply's decoded audio from its first packet (low-passed, its
    loudest 10 ms, as it goes: the work is spread over the packets); after a barge-in, finds the last audible sample
    once `TAIL_FRAMES` more frames are decoded, searching back from the end (`last_audible` on the whole reply
    gives the same sample)."""

    def __init__(self):
        self.decoder = OutgoingDecoder()
        self._replies: dict[int, _Reply] = {}

    def packet(self, seq: int, rtp_ts: int, payload: bytes, turns: list[int], first_offset: dict | None = None) -> None:
        """One outgoing packet, in send order. `turns`: the turns whose reply audio is in it; `first_offset`:
        turn → the frame offset of its first sample when the packet holds other audio too (search bound)."""
        pcm = self.decoder.decode(payload, rtp_ts)
        for t in turns:
            self._replies.setdefault(t, _Reply())
        for t, r in self._replies.items():
            if r.stop_at is not None and r.n > r.stop_at + TAIL_FRAMES:
                continue
            others = [o for o in turns if o != t]
            r.other.append(min((first_offset or {}).get(o, 0) for o in others) if others else None)
            r.seqs.append(seq)
            r.rtp.append(rtp_ts)
            r.raw.append(pcm)
            if r.n >= 2:
                r.filter_next(pcm)

    def stopped(self, turn: int) -> None:
        """The stop packet of `turn` (the first without its audio) is the packet just fed."""
        r = self._replies.get(turn)
        if r is not None and r.n:
            r.stop_at = r.n - 1

    def ready(self, turn: int) -> bool:
        r = self._replies.get(turn)
        return r is None or r.stop_at is None or r.n > r.stop_at + TAIL_FRAMES

    def drop(self, turn: int) -> None:
        self._replies.pop(turn, None)

    def result(self, turn: int) -> dict:
        """The truth fields of a stopped reply (and forget it): `audio_last_audible_seq`, `_rtp_ts`,
        `_offset_samples` (index in that packet's decoded 20 ms frame), `audible_ref_dbfs` (the reference)."""
        r = self._replies.pop(turn, None)
        out = {"audio_last_audible_seq": None, "audio_last_audible_rtp_ts": None,
               "audio_last_audible_offset_samples": None, "audio_audible_ref_dbfs": None,
               "audio_audible_criterion_db": AUDIBLE_DB}
        if r is None or not r.n:
            return out
        r.filter_next(None)  # the last frame (nothing after it)
        limit = None  # the search stops where another reply's audio begins after the stop (decoded: 312 later)
        for k in range(r.stop_at if r.stop_at is not None else r.n, r.n):
            if r.other[k] is not None:
                limit = k * FRAME + r.other[k] + 312
                break
        w = SR // 100
        if limit is not None:  # rare: the reference and the search on the low-passed audio before that bound
            y = np.concatenate(r.y)[:limit]
            c = np.concatenate([[0.0], np.cumsum(y * y)])
            ref = float(np.sqrt(max(float(np.max(c[w:] - c[:-w])), 0.0) / w)) if len(y) >= w else 0.0
            hit = np.flatnonzero(np.abs(y) > ref * 10 ** (AUDIBLE_DB / 20)) if ref > 0 else []
            last = int(hit[-1]) if len(hit) else None
        else:
            ref = float(np.sqrt(r.sq_max / w)) if r.sq_max > 0 else 0.0
            last = None
            if ref > 0:
                thr = ref * 10 ** (AUDIBLE_DB / 20)
                for k in range(len(r.y) - 1, -1, -1):  # back from the end: the last audible sample
                    hit = np.flatnonzero(np.abs(r.y[k]) > thr)
                    if len(hit):
                        last = k * FRAME + int(hit[-1])
                        break
        if ref > 0:
            out["audio_audible_ref_dbfs"] = round(20 * np.log10(ref), 2)
        if last is not None:
            k, off = divmod(last, FRAME)
            out.update(audio_last_audible_seq=r.seqs[k], audio_last_audible_rtp_ts=r.rtp[k],
                       audio_last_audible_offset_samples=int(off))
        return out
