"""In-process network impairment (the machine has no netem): delay, jitter and loss on RTP media.

Outgoing (agent → client): the DTLS transport's `_send_rtp` is wrapped per instance. It carries RTP *and*
RTCP (second byte 192–208); only RTP media is impaired. Each media packet is stamped when the sender hands it
to the transport (the "send time"), then dropped or handed on after `delay` with `loop.call_at`.

Incoming (client → agent): the receiver's `_handle_rtp_packet` is replaced per instance by a handler that stamps
the wire arrival, applies the incoming impairment and calls the agent's own handler (which decodes the audio
itself, so aiortc's jitter-buffer prefetch never delays endpointing). aiortc's remote track gets no frames.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImpairmentSpec:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    dist: str = "uniform"  # "uniform": U(−j, +j); "normal": N(0, j)
    loss: float = 0.0

    @property
    def active(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss > 0


class Impairment:
    """Per-packet decisions from a seeded generator: `(dropped, delay_s)`; delay = base + jitter, clipped ≥ 0."""

    def __init__(self, spec: ImpairmentSpec, seed):
        self.spec = spec
        self.rng = np.random.default_rng(seed)

    def decide(self) -> tuple[bool, float]:
        s = self.spec
        if not s.active:
            return False, 0.0
        dropped = bool(s.loss > 0 and self.rng.random() < s.loss)
        jitter = 0.0
        if s.jitter_ms > 0:
            if s.dist == "normal":
                jitter = float(self.rng.normal(0.0, s.jitter_ms))
            else:
                jitter = float(self.rng.uniform(-s.jitter_ms, s.jitter_ms))
        return dropped, max(0.0, s.delay_ms + jitter) / 1000.0


def is_rtcp(data: bytes) -> bool:
    """Same test as aiortc's: RTCP packet types 192–208 in the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 208


def rtp_header(data: bytes) -> tuple[int, int, int]:
    """(sequence number, timestamp, payload type) of a plain RTP packet."""
    seq, ts = struct.unpack_from("!HI", data, 2)
    return seq, ts, data[1] & 0x7F


class _Later:
    """Keeps references to delayed sends so they are not garbage-collected; cancels them on close."""

    def __init__(self):
        self.handles: set = set()
        self.tasks: set = set()

    def call_at(self, loop, when, coro_fn, *args):
        def fire():
            self.handles.discard(h)
            task = loop.create_task(coro_fn(*args))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        h = loop.call_at(when, fire)
        self.handles.add(h)

    def cancel(self):
        for h in list(self.handles):
            h.cancel()
        self.handles.clear()


def wrap_outgoing(dtls_transport, impairment: Impairment, on_media, on_wire=None) -> _Later:
    """Impair RTP media sent through `dtls_transport`. `on_media(data, t_send, delay_s, dropped)` is called
    for every media packet at the instant the sender hands it over, before any delay; `on_wire(data, t_wire,
    t_start)` when it really went out (after the injected delay and whatever the event loop added to it): `t_wire`
    is stamped when the send returned — SRTP protection and the syscall done, the datagram in the receiver's socket
    on a loopback interface — as the harness's kernel receive stamp sees it; `t_start` just before the send began.
    The datagram reached the receiver somewhere in [t_start, t_wire]: a process preempted right after the syscall
    stamps `t_wire` late (on two busy cores, by 0.1 ms and more), so a receiver may read the datagram before
    `t_wire` but never before `t_start`."""
    orig = dtls_transport._send_rtp
    loop = asyncio.get_running_loop()
    later = _Later()

    async def send_late(data: bytes) -> None:
        t_start = time.monotonic()
        try:
            await orig(data)
        except ConnectionError:
            pass
        except Exception as exc:  # the call is ending
            log.debug("delayed RTP send failed: %s", exc)
        if on_wire is not None:
            on_wire(data, time.monotonic(), t_start)

    async def send_rtp(data: bytes) -> None:
        if is_rtcp(data):
            await orig(data)
            return
        t_send = time.monotonic()
        dropped, delay = impairment.decide()
        try:
            on_media(data, t_send, delay, dropped)
        except Exception:  # truth keeping must never stop the media
            log.exception("outgoing packet bookkeeping failed")
        if dropped:
            return
        if delay <= 0:
            t_start = time.monotonic()
            await orig(data)
            if on_wire is not None:
                on_wire(data, time.monotonic(), t_start)
        else:
            later.call_at(loop, t_send + delay, send_late, data)

    dtls_transport._send_rtp = send_rtp
    return later


def wrap_incoming(receiver, impairment: Impairment, on_packet) -> _Later:
    """Replace `receiver._handle_rtp_packet`: `on_packet(packet, t_arrival, t_wire, delay_s)` is called for every
    packet that survives the incoming impairment, at its (delayed) arrival; a dropped packet is reported at
    once as `on_packet(packet, None, t_wire, delay_s)`."""
    loop = asyncio.get_running_loop()
    later = _Later()

    def deliver(handle_box, packet, t_wire, delay):
        later.handles.discard(handle_box[0])
        on_packet(packet, time.monotonic(), t_wire, delay)

    async def handle_rtp_packet(packet, arrival_time_ms: int = 0) -> None:
        t_wire = time.monotonic()
        dropped, delay = impairment.decide()
        if dropped:
            on_packet(packet, None, t_wire, delay)
        elif delay <= 0:
            on_packet(packet, t_wire, t_wire, 0.0)
        else:
            box: list = []
            box.append(loop.call_at(t_wire + delay, deliver, box, packet, t_wire, delay))
            later.handles.add(box[0])

    receiver._handle_rtp_packet = handle_rtp_packet
    return later
