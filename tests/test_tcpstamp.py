"""harness.devices.tcpstamp: kernel arrival stamps of WebSocket frames over TCP.

The truth is the sender's own clock: a plain-socket WebSocket server in a thread (hand-made frames, RFC 6455) stamps
`time.monotonic()` before and after it sends each message's last piece. The client is aiohttp with the stamped
socket, and its event loop is kept busy while the messages arrive, so the loop's own stamps are late.

A limit of the kernel, shown by the second test: segments waiting in the receive queue are coalesced, and the merged
segment keeps the NEWEST stamp (tcp_try_coalesce). A read is exact when nothing of a later message arrived before
it; after a longer stall the stamp is the newest segment read with it: still never after the loop's hand-over.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import struct
import threading
import time

import aiohttp

from harness.devices import tcpstamp

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(op: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


# (pieces: bytes sent one after another, 10 ms apart; what aiohttp hands over)
PLAN = [
    ([frame(1, b"a")], ("text", "a")),
    ([frame(1, b"x" * 300)], ("text", "x" * 300)),                       # 16-bit length
    ([frame(9, b"p"), frame(1, b"b")], ("text", "b")),                    # a ping aiohttp answers itself, then text
    ([frame(1, b"he", fin=False), frame(0, b"llo")], ("text", "hello")),  # fragmented: the last piece is the arrival
    ([frame(1, b"split")[:1], frame(1, b"split")[1:]], ("text", "split")),  # a header cut in two
    ([frame(2, bytes(70000))], ("binary", 70000)),                        # 64-bit length, several segments
    ([frame(8, struct.pack(">H", 1000))], ("close", None)),
]


class Server(threading.Thread):
    """Accepts one WebSocket client, waits for its first frame, then sends PLAN, one message every `gap` s (the
    pieces of one message 10 ms apart); `sent[i]` = (start, end) of the send of message i's last piece, on the host
    monotonic clock."""

    def __init__(self, gap: float):
        super().__init__(daemon=True)
        self.gap = gap
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.sent: list[tuple[float, float]] = []

    def run(self):
        conn, _ = self.lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = b""
        while b"\r\n\r\n" not in req:
            req += conn.recv(4096)
        key = [ln.split(b":", 1)[1].strip() for ln in req.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        conn.recv(4096)  # the client's "go" (masked; its content does not matter)
        start = time.monotonic()
        for i, (pieces, _) in enumerate(PLAN):
            time.sleep(max(0.0, start + i * self.gap - time.monotonic()))
            for k, piece in enumerate(pieces):
                if k:
                    time.sleep(0.01)
                t0 = time.monotonic()
                conn.sendall(piece)
                t1 = time.monotonic()
            self.sent.append((t0, t1))
        time.sleep(0.5)
        conn.close()


async def _hog(block_s: float):
    """Keeps the event loop busy `block_s` at a time, with 5 ms breaks: messages wait for it."""
    while True:
        time.sleep(block_s)
        await asyncio.sleep(0.005)


async def _client(port: int, *, stall_s: float = 0.0, hog_s: float = 0.0):
    holder: list = []
    got = []
    connector = aiohttp.TCPConnector(socket_factory=tcpstamp.socket_factory(holder))
    async with aiohttp.ClientSession(connector=connector) as session:
        ws = await session.ws_connect(f"http://127.0.0.1:{port}/", autoping=True, autoclose=False)
        await asyncio.sleep(0.1)  # stamping turned on (lazily by the kernel) before anything is sent
        await ws.send_str("go")
        hog = asyncio.ensure_future(_hog(hog_s)) if hog_s else None
        time.sleep(stall_s)
        for _ in PLAN:
            msg = await ws.receive()
            loop_t = time.monotonic()
            close = msg.type == aiohttp.WSMsgType.CLOSE
            got.append((msg, tcpstamp.arrival_of(holder[0].frames, close=close), loop_t))
        if hog:
            hog.cancel()
        await ws.close()
    return holder[0], got


def _measure(gap: float, **kw):
    srv = Server(gap)
    srv.start()
    sock, got = asyncio.run(_client(srv.port, **kw))
    srv.join(5)
    assert sock.stamping and len(srv.sent) == len(PLAN)
    for (msg, _k, _t), (_pieces, (kind, want)) in zip(got, PLAN):
        if kind == "text":
            assert msg.type == aiohttp.WSMsgType.TEXT and msg.data == want
        elif kind == "binary":
            assert msg.type == aiohttp.WSMsgType.BINARY and len(msg.data) == want
        else:
            assert msg.type == aiohttp.WSMsgType.CLOSE
    return got, srv.sent


def test_kernel_stamps_are_the_sends_while_the_loop_is_busy():
    # messages 50 ms apart, the loop blocked 20 ms at a time: each waits up to 20 ms, none shares a read
    got, sent = _measure(0.05, hog_s=0.02)
    late = []
    for (msg, kernel, loop_t), (_pieces, (kind, want)), (t0, t1) in zip(got, PLAN, sent):
        assert kernel is not None, (kind, want)
        # on loopback the kernel stamps the segment inside the sender's send: within it, to the mapping's µs
        assert t0 - 2e-4 <= kernel <= t1 + 5e-4, (kind, (kernel - t0) * 1e3, (t1 - t0) * 1e3)
        late.append(loop_t - t1)
    assert max(late) > 0.010, late  # what the loop alone would have said


def test_after_a_long_stall_the_stamp_is_the_newest_segment_read():
    # everything arrives while the loop is blocked for 0.5 s: the queued segments coalesce
    got, sent = _measure(0.02, stall_s=0.5)
    for (msg, kernel, loop_t), (t0, _t1) in zip(got, sent):
        assert kernel is not None and t0 - 2e-4 <= kernel <= loop_t
    assert got[0][2] - sent[0][1] > 0.3  # the loop's stamp: late by the stall


def test_frame_headers():
    assert tcpstamp.frame_length(frame(1, b"abc")) == (2, 1, True, 3)
    assert tcpstamp.frame_length(frame(0, b"x" * 300, fin=False)) == (4, 0, False, 300)
    assert tcpstamp.frame_length(frame(2, bytes(70000))) == (10, 2, True, 70000)
    assert tcpstamp.frame_length(b"\x81") is None and tcpstamp.frame_length(frame(2, bytes(70000))[:5]) is None
    masked = bytes([0x81, 0x80 | 3]) + b"\0\0\0\0abc"
    assert tcpstamp.frame_length(masked) == (6, 1, True, 3)


def test_arrival_of_skips_control_frames_and_ends_at_fin():
    from collections import deque

    frames = deque([(9, True, 1.0), (1, False, 2.0), (10, True, 2.5), (0, True, 3.0), (1, True, None), (8, True, 5.0)])
    assert tcpstamp.arrival_of(frames) == 3.0  # ping skipped; a pong between fragments skipped
    assert tcpstamp.arrival_of(frames) is None  # an unstamped frame: the caller keeps its own stamp
    assert tcpstamp.arrival_of(frames, close=True) == 5.0
    assert tcpstamp.arrival_of(frames) is None and not frames


def test_reads_stop_at_the_upgrade_and_at_every_frame_end():
    """A read never crosses a frame end (else its stamp would be a later frame's): the upgrade response, then each
    frame, come out of recv one by one although they arrived in one segment."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    client = tcpstamp.StampedSocket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(lsock.getsockname())
    conn, _ = lsock.accept()
    time.sleep(0.1)  # the kernel turns stamping on lazily (a deferred static key): a segment right away may have none
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    frames = [frame(1, b"a"), frame(9, b""), frame(1, b"x" * 300), frame(2, bytes(70000)), frame(1, b"he", fin=False),
              frame(0, b"llo")]
    conn.sendall(upgrade + b"".join(frames))
    time.sleep(0.05)
    reads = []
    while sum(map(len, reads)) < len(upgrade) + sum(map(len, frames)):
        reads.append(client.recv(1 << 20))
    assert reads[0] == upgrade
    joined, ends = b"", []
    for r in reads[1:]:
        joined += r
        ends.append(len(joined))
    want = [sum(map(len, frames[:i + 1])) for i in range(len(frames))]
    assert set(want) <= set(ends) and joined == b"".join(frames)  # every frame end is a read end
    assert [(op, fin) for op, fin, _ in client.frames] == [(1, True), (9, True), (1, True), (2, True), (1, False),
                                                           (0, True)]
    assert all(stamp is not None for _, _, stamp in client.frames)
    client.close(), conn.close(), lsock.close()
