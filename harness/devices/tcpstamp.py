"""Kernel receive timestamps of WebSocket frames over plain TCP, on the host monotonic clock.

A media-stream call (transports/telephony) reads its WebSocket through aiohttp, which hands a message over when the
event loop gets to it: late by however long the loop (or the process) was busy. Linux stamps every TCP segment when
it arrives; with `SO_TIMESTAMPNS` set, `recvmsg` returns the stamp of the **last segment it copied from**
(CLOCK_REALTIME, mapped onto `time.monotonic()` as in `kstamp`). So a read that ends exactly at the end of a frame
carries that frame's arrival: the arrival of its last byte.

`StampedSocket` is a `socket.socket` that asyncio reads with `recv` like any other (aiohttp's `socket_factory`). It
never reads across the end of a WebSocket frame: it passes the HTTP upgrade response through up to its blank line,
then peeks each frame header (RFC 6455 §5.2: 2–14 bytes; the server's frames are unmasked) and limits each read to
the rest of the current frame. Every completed frame goes into `frames` as `(opcode, fin, arrival)`; the reader
of the messages (`arrival_of`) pops them in order, one message = its frames up to the one with FIN, control frames
that aiohttp answers itself (ping, pong) skipped.

Only for `ws://`: under TLS the socket carries TLS records, not frames (`wss://` keeps the loop's stamps; say so).
A segment the kernel did not stamp, or a stamp that cannot be the data just read (in the future, or older than
`kstamp.MAX_AGE`), reads as None: the caller keeps its own stamp.
"""

from __future__ import annotations

import socket
import struct
from collections import deque

from harness.devices import kstamp

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # linux/asm-generic/socket.h; SCM_TIMESTAMPNS is the same
_CMSG = socket.CMSG_SPACE(16)  # one struct timespec
CONTROL = {8, 9, 10}  # close, ping, pong (RFC 6455 §5.5)
CLOSE = 8


def _mono(ancdata) -> float | None:
    """The kernel stamp in recvmsg's ancillary data, as a `time.monotonic()` value (`kstamp.to_monotonic`)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            return kstamp.to_monotonic(*struct.unpack("qq", data[:16]))
    return None


def header_length(head: bytes) -> int | None:
    """Bytes in the frame header that starts `head`, or None if `head` is too short to say (RFC 6455 §5.2)."""
    if len(head) < 2:
        return None
    n7 = head[1] & 0x7F
    return 2 + (2 if n7 == 126 else 8 if n7 == 127 else 0) + (4 if head[1] & 0x80 else 0)


def frame_length(head: bytes) -> tuple[int, int, bool, int] | None:
    """(header bytes, opcode, fin, payload bytes) of the frame whose header starts `head`, or None if incomplete."""
    hl = header_length(head)
    if hl is None or len(head) < hl:
        return None
    n7 = head[1] & 0x7F
    n = struct.unpack(">H", head[2:4])[0] if n7 == 126 else struct.unpack(">Q", head[2:10])[0] if n7 == 127 else n7
    return hl, head[0] & 0x0F, bool(head[0] & 0x80), n


class StampedSocket(socket.socket):
    """A TCP socket whose reads stop at WebSocket frame ends, each completed frame stamped by the kernel."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        try:
            self.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.stamping = True
        except OSError:
            self.stamping = False
        self.frames: deque[tuple[int, bool, float | None]] = deque()
        self._http = True  # before the upgrade response's blank line
        self._tail = b""  # the last bytes of the HTTP response read so far (a blank line may straddle two reads)
        self._head = b""  # the current frame's header bytes read so far
        self._frame: tuple[int, bool] | None = None  # (opcode, fin) of the frame being read
        self._left = 0  # bytes of the current frame still to read

    # asyncio's selector transport reads with recv(max_size); nothing else here is overridden
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if flags or not self.stamping:
            return super().recv(bufsize, flags)
        limit = self._limit(bufsize)
        data, anc, _flags, _addr = self.recvmsg(limit, _CMSG)
        if data:
            self._advance(data, _mono(anc))
        return data

    def _limit(self, bufsize: int) -> int:
        if self._http:
            peek = super().recv(bufsize, socket.MSG_PEEK)
            seen = self._tail + peek
            i = seen.find(b"\r\n\r\n")
            return bufsize if i < 0 else i + 4 - len(self._tail)
        if self._frame is not None:
            return min(bufsize, self._left)
        peek = super().recv(14, socket.MSG_PEEK)  # at most one header
        parsed = frame_length(self._head + peek)
        if parsed is None:  # a partial header: take what is there
            return min(bufsize, len(peek))
        hl, _op, _fin, n = parsed
        return min(bufsize, hl - len(self._head) + n)

    def _advance(self, data: bytes, stamp: float | None) -> None:
        if self._http:
            seen = self._tail + data
            if seen.endswith(b"\r\n\r\n"):
                self._http = False
            self._tail = seen[-3:]
            return
        pos = 0
        while pos < len(data):
            if self._frame is None:
                hl = header_length(self._head)
                need = (hl or 2) - len(self._head)
                self._head += data[pos:pos + need]
                pos += need
                parsed = frame_length(self._head)
                if parsed is None:
                    continue
                _hl, op, fin, n = parsed
                self._frame, self._left, self._head = (op, fin), n, b""
            take = min(self._left, len(data) - pos)
            pos += take
            self._left -= take
            if self._left == 0:
                # this read ended here (reads never cross a frame end): the kernel stamp is this frame's last byte
                self.frames.append((*self._frame, stamp if pos == len(data) else None))
                self._frame = None


def arrival_of(frames: deque, close: bool = False) -> float | None:
    """The kernel arrival of the next message aiohttp handed over: its final frame's stamp (None if unstamped).
    Pops that message's frames and any ping/pong before it; `close` for a close message."""
    while frames:
        op, fin, stamp = frames.popleft()
        if op == CLOSE:
            if close:
                return stamp
            continue
        if op in CONTROL:
            continue
        if close:
            continue
        if fin:
            return stamp
    return None


def socket_factory(holder: list):
    """An aiohttp `socket_factory` making a `StampedSocket` and appending it to `holder` (the call reads its
    `frames`). Non-blocking, as asyncio wants it."""
    def make(addr_info) -> socket.socket:
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        sock = StampedSocket(family, type_, proto)
        sock.setblocking(False)
        holder.append(sock)
        return sock

    return make
