"""Kernel receive timestamps of UDP datagrams, on the host monotonic clock.

An event loop stamping a datagram when it reads it is late by however long the loop was busy (with ten calls in
one loop on two cores: up to 20 ms). Linux stamps every datagram when it reaches the socket; after a read,
`ioctl(SIOCGSTAMPNS)` returns the stamp of the datagram just read (CLOCK_REALTIME), which this module maps onto
`time.monotonic()` with an offset read at the same moment (both clocks are slewed alike by NTP; a step of the wall
clock in between would show as one wrong stamp, and the stamp is rejected if it is in the future or older than
`MAX_AGE`). A datagram the kernel did not stamp (stamping still warming up) reads as "now": the loop's instant,
no worse than without this module.

Anything unavailable (another OS, a socket without stamps) returns None and the caller keeps its own stamp.
"""

from __future__ import annotations

import errno
import fcntl
import struct
import time

SIOCGSTAMPNS = 0x8907  # linux/sockios.h
MAX_AGE = 2.0  # s: a stamp older than this is not the datagram just read
_ZERO = bytes(16)


def enable(sock) -> bool:
    """Ask the kernel to stamp the datagrams of `sock` (an object with fileno()). False if it cannot.

    The first SIOCGSTAMPNS turns stamping on for the socket (its answer is meaningless: ENOENT, or the time of the
    call); the kernel then stamps datagrams as they arrive, after a short warm-up (a deferred static key) — do
    this when the socket is made, not when the first datagram that matters arrives. Not `SO_TIMESTAMPNS`: with
    it the stamps go to recvmsg's ancillary data, which asyncio discards, and the ioctl answers ENOENT."""
    try:
        fcntl.ioctl(sock.fileno(), SIOCGSTAMPNS, _ZERO)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            return False
    except (ValueError, AttributeError):
        return False
    return True


def last_read(fd: int) -> float | None:
    """The kernel's receive instant of the datagram last read from `fd`, as a `time.monotonic()` value."""
    try:
        sec, nsec = struct.unpack("qq", fcntl.ioctl(fd, SIOCGSTAMPNS, _ZERO))
    except (OSError, ValueError):
        return None
    return to_monotonic(sec, nsec)


def to_monotonic(sec: int, nsec: int) -> float | None:
    """A kernel receive stamp (CLOCK_REALTIME) as a `time.monotonic()` value, with the offset read now; None if it
    cannot be the data just read (in the future, or older than `MAX_AGE`)."""
    now_mono = time.monotonic()
    age = time.time() - (sec + nsec * 1e-9)
    if not -1e-4 <= age <= MAX_AGE:
        return None
    return now_mono - age
