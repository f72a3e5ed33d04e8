"""μ-law against an independent implementation: CPython's C `audioop` (present up to 3.12), every int16 value and
every code; and no algorithmic delay (an impulse stays on its sample)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from harness.audio import mulaw

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")


def test_encode_matches_audioop_for_every_int16():
    allv = np.arange(-32768, 32768, dtype=np.int16)
    assert mulaw.encode(allv) == audioop.lin2ulaw(allv.tobytes(), 2)


def test_decode_matches_audioop_for_every_code():
    codes = bytes(range(256))
    ref = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype=np.int16)
    assert np.array_equal(mulaw.decode(codes), ref)


def test_known_codes():
    # G.711: 0xFF and 0x7F are ±0, 0x80 / 0x00 the largest magnitudes (±32124)
    assert list(mulaw.decode(bytes([0xFF, 0x7F, 0x80, 0x00]))) == [0, 0, 32124, -32124]
    assert mulaw.encode(np.array([0], np.int16)) == b"\xff"


def test_no_delay_impulse_stays_on_its_sample():
    x = np.zeros(160, np.int16)
    x[37] = 20000
    y = mulaw.decode(mulaw.encode(x))
    assert int(np.argmax(np.abs(y))) == 37 and abs(int(y[37]) - 20000) < 20000 * 0.04
