"""vlh's playout emulator: what a browser-like receiver would play, and when (design.md §1, §4).

aiortc's own receiver hides ≈80 ms behind a fixed JitterBuffer(capacity=16, prefetch=4) and stalls after a loss, so
vlh bypasses it: every RTP packet is stamped on arrival (host monotonic) and handed here. The emulator runs a playout
clock that ticks every 20 ms like a sound card (tick n at `t_start + n·20 ms`, no scheduler noise) and, at each
tick, plays the next packet in sequence order if it has arrived by then:

- arrived           → decode and play ("play");
- missing, but a later packet is already here → the packet is treated as lost: packet-loss concealment for one
  frame ("conceal"), the sequence moves on (a late arrival is then discarded and counted);
- missing, nothing later here → an underrun: concealment without moving on ("expand"), the delay grows by 20 ms.

Adaptive mode (default, like NetEq in spirit): the target delay follows the measured arrival jitter — the 95th
percentile, over the last `window` packets, of each packet's transit relative to the fastest one — with a floor of
20 ms; in silence it grows the delay towards the target before an underrun ("stretch"), and when the buffer has
held more than the target plus one frame for `settle` ticks it drops silent frames, one per tick, to come back
down ("drop"). Neither touches speech. `fixed:N` mode starts at N ms and never adapts.

Everything is deterministic given the arrival stamps, so the ear channel is reproducible and its timing exact; it is
driven live (`advance(now)` from a 20 ms task) so the ear signal also exists while the call runs.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass

import numpy as np

from harness.audio import SAMPLE_RATE as SR
from harness.audio.settled import SettledSilence

FRAME = 960  # samples per 20 ms at 48 kHz
FRAME_S = 0.02


@dataclass
class Packet:
    seq: int  # unwrapped sequence number
    rtp_ts: int  # unwrapped RTP timestamp
    arrival: float  # host monotonic
    payload: bytes


@dataclass
class Tick:
    """One 20 ms output frame of the ear channel."""

    t: float  # host monotonic playout instant of the frame's first sample
    kind: str  # play | conceal (loss) | expand (underrun) | stretch (delay grown in silence)
    seq: int | None = None
    rtp_ts: int | None = None
    arrival: float | None = None
    level: float = 0.0  # RMS of the frame played


KINDS = ("play", "conceal", "expand", "stretch")
_NONE = -(2**63)  # no packet (seq / rtp_ts) in the compact log
_NONE32 = -(2**31)  # the same in the int32 `seq` column (an unwrapped seq reaches 2**31 after 1.3 years at 50/s)


class TickLog:
    """The ear's output frames, compact: one column per Tick field in a typed array (33 bytes a frame, ≈ 6 MB
    per call-hour, where a list of Tick objects took ≈ 100 MB): instants float64 (exact), seq int32, RTP timestamp
    int64 (unwrapped from a random 32-bit start), level float32 (the RMS of float32 samples). Reads like the list it replaces: len, index,
    iteration and truth give `Tick`s; `columns()` gives numpy views for vectorised queries."""

    def __init__(self):
        self.t, self.kind = array("d"), array("b")
        self.seq, self.rtp_ts = array("i"), array("q")
        self.arrival, self.level = array("d"), array("f")

    def append(self, tick: "Tick") -> None:
        self.t.append(tick.t)
        self.kind.append(KINDS.index(tick.kind))
        self.seq.append(_NONE32 if tick.seq is None else tick.seq)
        self.rtp_ts.append(_NONE if tick.rtp_ts is None else tick.rtp_ts)
        self.arrival.append(math.nan if tick.arrival is None else tick.arrival)
        self.level.append(tick.level)

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, i: int) -> "Tick":
        seq, ts, arr = self.seq[i], self.rtp_ts[i], self.arrival[i]
        return Tick(self.t[i], KINDS[self.kind[i]], None if seq == _NONE32 else seq, None if ts == _NONE else ts,
                    None if math.isnan(arr) else arr, self.level[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for a in (self.t, self.kind, self.seq, self.rtp_ts, self.arrival, self.level))

    def columns(self) -> dict[str, np.ndarray]:
        """Copies of the columns as numpy arrays (copies: the log may grow while they are used)."""
        seq = np.array(self.seq, np.int64)
        seq[seq == _NONE32] = _NONE
        return {"t": np.array(self.t, float), "kind": np.array(self.kind, np.int8),
                "seq": seq, "rtp_ts": np.array(self.rtp_ts, np.int64),
                "arrival": np.array(self.arrival, float), "level": np.array(self.level, float)}


def parse_jitter_mode(mode: str) -> tuple[str, float]:
    """'adaptive' | 'fixed:<ms>' → (kind, initial delay s)."""
    mode = (mode or "adaptive").strip().lower()
    if mode == "adaptive":
        return "adaptive", 0.02
    if mode.startswith("fixed:"):
        try:
            ms = float(mode.split(":", 1)[1])
        except ValueError:
            ms = -1
        if ms >= 0:
            return "fixed", ms / 1000.0
    from harness.errors import VlhError

    raise VlhError(f"--jitter-buffer {mode!r}: use 'adaptive' or 'fixed:<ms>' (e.g. fixed:60)")


class Unwrapper:
    """Unwraps 16-bit sequence numbers / 32-bit timestamps into monotonic integers."""

    def __init__(self, bits: int):
        self.mod = 1 << bits
        self.last: int | None = None
        self.base = 0

    def __call__(self, v: int) -> int:
        if self.last is None:
            self.last = v
            return v
        d = (v - self.last) % self.mod
        if d > self.mod // 2:  # older (reordered) value
            d -= self.mod
        out = self._unwrapped_last() + d
        if d > 0:
            self.base, self.last = out - v, v
        return out

    def _unwrapped_last(self) -> int:
        return self.base + self.last


class PlayoutEmulator:
    def __init__(self, mode: str = "adaptive", floor_s: float = 0.02, window: int = 100, settle: int = 25,
                 decoder=None):
        self.kind, self.initial_delay = parse_jitter_mode(mode)
        self.floor = floor_s
        self.window = window
        self.settle = settle
        self._decoder = decoder if decoder is not None else _OpusDecoder()
        self._seq_unwrap = Unwrapper(16)
        self._ts_unwrap = Unwrapper(32)
        self.packets: dict[int, Packet] = {}
        self.n_arrivals = 0  # packets pushed
        self.ticks = TickLog()
        self.t_start: float | None = None
        self.next_seq: int | None = None
        self.max_seq_seen: int | None = None
        self._transit = deque(maxlen=window)
        self._excess_ticks = 0
        self._last_pcm = np.zeros(FRAME, np.float32)
        self._conceal_run = 0
        self.target_delay = self.initial_delay
        self.counts = {"play": 0, "conceal": 0, "expand": 0, "drop": 0, "stretch": 0, "late": 0, "duplicate": 0}
        self.on_frame = None  # callback(t, pcm, level) for each output frame (level: its RMS)

    # ---- input ---------------------------------------------------------------------------------------------
    def push(self, seq16: int, ts32: int, arrival: float, payload: bytes) -> None:
        seq, ts = self._seq_unwrap(seq16), self._ts_unwrap(ts32)
        pkt = Packet(seq, ts, arrival, payload)
        self.n_arrivals += 1
        if self.t_start is None:  # first packet: start the playout clock after the initial delay
            self.t_start = arrival + self.initial_delay
            self.next_seq = seq
            self._ts0 = ts
            self._min_transit = math.inf
        if seq in self.packets:
            self.counts["duplicate"] += 1
            return
        if seq < self.next_seq:
            self.counts["late"] += 1
            return
        self.packets[seq] = pkt
        self.max_seq_seen = seq if self.max_seq_seen is None else max(self.max_seq_seen, seq)
        transit = arrival - (ts - self._ts0) / SR
        self._transit.append(transit)
        if self.kind == "adaptive" and (self.n_arrivals < 50 or self.n_arrivals % 5 == 0):
            self._update_target()

    def _update_target(self) -> None:
        tr = np.fromiter(self._transit, float)
        rel = tr - tr.min()
        jitter = _quantile(rel, 0.95) if len(rel) > 1 else 0.0
        self.target_delay = max(self.floor, jitter + 0.005)

    # ---- output --------------------------------------------------------------------------------------------
    def buffered_delay(self, t: float) -> float:
        """How long the next packet has been waiting, if it is here (the current jitter-buffer delay)."""
        pkt = self.packets.get(self.next_seq)
        return t - pkt.arrival if pkt is not None and pkt.arrival <= t else 0.0

    def advance(self, now: float) -> None:
        """Produce every output frame whose tick is ≤ now."""
        if self.t_start is None:
            return
        while True:
            t = self.t_start + len(self.ticks) * FRAME_S
            if t > now:
                return
            self._tick(t)

    def _tick(self, t: float) -> None:
        seq = self.next_seq
        pkt = self.packets.get(seq)
        if pkt is not None and pkt.arrival <= t:
            pcm = None
            if self.kind == "adaptive":
                # shrink: the buffer has held more than target + one frame for `settle` ticks → drop quiet frames
                # (one per tick) until it is back, like NetEq's accelerate in silence
                excess = t - pkt.arrival > self.target_delay + FRAME_S
                self._excess_ticks = self._excess_ticks + 1 if excess else 0
                nxt = self.packets.get(seq + 1)
                if (self._excess_ticks >= self.settle and nxt is not None and nxt.arrival <= t
                        and _rms(self._last_pcm) < 0.003):
                    pcm = self._decode(pkt)
                    if _rms(pcm) < 0.003:
                        self.counts["drop"] += 1
                        self._release(seq)
                        seq, pkt, pcm = seq + 1, nxt, None
                        self.next_seq = seq
                if (pcm is None and t - pkt.arrival + FRAME_S <= self.target_delay
                        and _rms(self._last_pcm) < 0.003):
                    # preemptive expand in silence: grow the delay towards the target before an underrun
                    self.counts["stretch"] += 1
                    self._emit(Tick(t, "stretch", seq), np.zeros(FRAME, np.float32))
                    return
            if pcm is None:
                pcm = self._decode(pkt)
            self._emit(Tick(t, "play", pkt.seq, pkt.rtp_ts, pkt.arrival), pcm)
            self._release(seq)
            self.next_seq = seq + 1
            self._conceal_run = 0
            return
        later_here = self.max_seq_seen is not None and self.max_seq_seen > seq and any(
            p.arrival <= t for s, p in self.packets.items() if s > seq)
        pcm = self._conceal()
        if later_here:  # lost (or hopelessly late): conceal one frame and move on
            self.counts["conceal"] += 1
            self._emit(Tick(t, "conceal", seq), pcm)
            self.next_seq = seq + 1
        else:  # underrun: wait for it, the delay grows by one frame
            self.counts["expand"] += 1
            self._emit(Tick(t, "expand", seq), pcm)

    def _release(self, seq: int) -> None:
        pkt = self.packets.pop(seq, None)
        if pkt is not None:
            pkt.payload = b""

    def _decode(self, pkt: Packet) -> np.ndarray:
        pcm = self._decoder.decode(pkt.payload, pkt.rtp_ts)
        self._last_pcm = pcm
        return pcm

    def _conceal(self) -> np.ndarray:
        """Simple PLC: the last frame, faded, then silence."""
        self._conceal_run += 1
        if self._conceal_run > 3:
            return np.zeros(FRAME, np.float32)
        g = 0.5 ** self._conceal_run
        return (self._last_pcm[::-1] * g).astype(np.float32)

    def _emit(self, tick: Tick, pcm: np.ndarray) -> None:
        if tick.kind == "play":
            self.counts["play"] += 1
        tick.level = _rms(pcm)
        self.ticks.append(tick)
        if self.on_frame is not None:
            self.on_frame(tick.t, pcm, tick.level)

    # ---- the per-packet playout log ---------------------------------------------------------------------------
    LOG_COLUMNS = ("t_mono", "kind", "seq", "seq16", "rtp_ts", "rtp_ts32", "arrival_mono", "level")

    def log_frame(self):
        """Every output frame (docs/schema.md `recordings/call-<n>.playout.parquet`): its playout instant `t_mono` (host
        monotonic, first sample of the frame), `kind` (play | conceal | expand | stretch), the packet it played
        (`seq`/`rtp_ts` unwrapped, `seq16`/`rtp_ts32` as on the wire, `arrival_mono`) and its RMS `level`."""
        import pandas as pd

        c = self.ticks.columns()

        def nullable(v: np.ndarray, none: np.ndarray):
            return pd.arrays.IntegerArray(np.where(none, 0, v), none.copy())

        no_seq, no_ts = c["seq"] == _NONE, c["rtp_ts"] == _NONE
        df = pd.DataFrame({"t_mono": c["t"], "kind": np.array(KINDS, dtype=object)[c["kind"]],
                           "seq": nullable(c["seq"], no_seq), "seq16": nullable(c["seq"] & 0xFFFF, no_seq),
                           "rtp_ts": nullable(c["rtp_ts"], no_ts),
                           "rtp_ts32": nullable(c["rtp_ts"] & 0xFFFFFFFF, no_ts),
                           "arrival_mono": c["arrival"], "level": c["level"]}, columns=list(self.LOG_COLUMNS))
        return df

    def write_log(self, path) -> None:
        """The playout log as Parquet at `path` (see `log_frame`)."""
        from pathlib import Path

        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        self.log_frame().to_parquet(tmp, index=False)
        tmp.replace(path)

    # ---- queries for attribution ----------------------------------------------------------------------------
    def tick_at(self, t: float) -> Tick | None:
        """The output frame playing at host time t."""
        if self.t_start is None:
            return None
        i = int(math.floor((t - self.t_start) / FRAME_S))
        if 0 <= i < len(self.ticks):
            return self.ticks[i]
        return None

    def stats_between(self, t_a: float, t_b: float) -> dict:
        """Concealment / underrun figures for the frames in [t_a, t_b); longest_gap: most frames in a row that
        were not real audio (a stall)."""
        out = {"conceal": 0, "expand": 0, "longest_gap": 0}
        t = np.frombuffer(self.ticks.t, float)  # a view, dropped before the log can grow again
        a, b = int(np.searchsorted(t, t_a, "left")), int(np.searchsorted(t, t_b, "left"))  # instants rise
        del t
        kind = np.frombuffer(self.ticks.kind, np.int8)[a:b].copy()
        gap = (kind == 1) | (kind == 2)  # conceal, expand
        out["conceal"], out["expand"] = int((kind == 1).sum()), int((kind == 2).sum())
        if gap.any():
            edges = np.diff(np.concatenate([[0], gap.view(np.int8), [0]]))
            out["longest_gap"] = int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())
        return out


def _rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.dot(x, x)) / len(x)) if len(x) else 0.0


def _quantile(x: np.ndarray, q: float) -> float:
    """np.quantile(x, q) (linear interpolation) with a partial sort: the same number, a fraction of the cost."""
    pos = q * (len(x) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(x) - 1)
    part = np.partition(x, (lo, hi))
    return float(part[lo] + (part[hi] - part[lo]) * (pos - lo))


class _OpusDecoder:
    """aiortc's Opus decoder (libopus via PyAV), mono float32 out."""

    def __init__(self):
        from aiortc.codecs.opus import OpusDecoder

        self._dec = OpusDecoder()
        self._silence = SettledSilence()

    def decode(self, payload: bytes, ts: int) -> np.ndarray:
        if self._silence.known(payload):  # the agent idling: its settled silence packet again
            return np.zeros(FRAME, np.float32)
        pcm = self._decode(payload, ts)
        self._silence.saw(payload, not pcm.any())
        return pcm

    def _decode(self, payload: bytes, ts: int) -> np.ndarray:
        from aiortc.jitterbuffer import JitterFrame

        out = []
        try:
            for fr in self._dec.decode(JitterFrame(data=payload, timestamp=ts & 0xFFFFFFFF)):
                a = fr.to_ndarray().reshape(-1, 2)[:, 0]
                out.append(a.astype(np.float32) / 32768.0)
        except Exception:  # a corrupt packet: treat as silence (counted by the caller as played)
            return np.zeros(FRAME, np.float32)
        if not out:
            return np.zeros(FRAME, np.float32)
        pcm = np.concatenate(out)
        if len(pcm) != FRAME:
            pcm = np.resize(pcm, FRAME) if len(pcm) > FRAME else np.concatenate(
                [pcm, np.zeros(FRAME - len(pcm), np.float32)])
        return pcm
