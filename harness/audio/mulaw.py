"""G.711 μ-law, table-based in numpy (`audioop` is gone in Python 3.13).

The encoder is the classic Sun g711.c `linear2ulaw` (14-bit magnitude, bias 0x21, clip 8159) evaluated once for all
65 536 int16 values; the decoder is `ulaw2linear` for all 256 codes. μ-law is sample-by-sample companding: it has no
algorithmic delay (a sample's code depends on that sample alone), which is why the telephony transport's codec stage
is 0 ms (measured: tests/test_mulaw.py checks an impulse stays on its sample).
"""

from __future__ import annotations

import numpy as np

_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _build_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit, arithmetic shift (rounds toward −∞)
    neg = pcm < 0
    mag = np.where(neg, -pcm, pcm)
    mask = np.where(neg, 0x7F, 0xFF)
    mag = np.minimum(mag, 8159) + 0x21
    seg = np.searchsorted(_SEG_END, mag, side="left")
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0xF))
    return (code ^ mask).astype(np.uint8)


def _build_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


ENCODE = _build_encode()  # index: int16 value + 32768
DECODE = _build_decode()  # index: μ-law byte


def encode(pcm16: np.ndarray) -> bytes:
    """int16 samples → μ-law bytes."""
    x = np.asarray(pcm16, dtype=np.int16).astype(np.int32) + 32768
    return ENCODE[x].tobytes()


def decode(data: bytes) -> np.ndarray:
    """μ-law bytes → int16 samples."""
    return DECODE[np.frombuffer(data, dtype=np.uint8)]


def float_to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(x, np.float32), -1.0, 32767 / 32768) * 32768).astype(np.int16)
