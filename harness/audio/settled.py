"""Repeated silence packets: an idle voice agent sends the same Opus packet for digital silence 50 times a second.

Once one packet has decoded to exact zeros `settle` times in a row (the decoder has settled on it), further copies
of the same bytes are known to decode to zeros: a decoder can skip them. Tested bit-exact in tests/test_playout.py.
"""

from __future__ import annotations

SETTLE = 10  # identical silent packets decoded before the rest are taken as read


class SettledSilence:
    def __init__(self, settle: int = SETTLE):
        self.settle = settle
        self._payload: bytes | None = None  # a packet that decoded to digital silence …
        self._run = 0  # … this many times in a row

    def known(self, payload: bytes) -> bool:
        """True if `payload` is the settled silence packet: it decodes to zeros, no need to decode it."""
        return self._run >= self.settle and payload == self._payload

    def saw(self, payload: bytes, silent: bool) -> None:
        """`payload` was decoded; `silent`: to exact zeros."""
        if not silent:
            self._payload, self._run = None, 0
        elif payload == self._payload:
            self._run += 1
        else:
            self._payload, self._run = payload, 1
