"""Kernel receive stamps: a datagram's stamp is when it reached the socket, not when a busy loop read it."""

import asyncio
import socket
import time

from harness.devices import kstamp


def test_stamps_do_not_wait_for_a_busy_loop():
    async def main():
        loop = asyncio.get_running_loop()
        got = []

        class Busy(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.append((kstamp.last_read(fd), time.monotonic()))
                time.sleep(0.01)  # the loop is busy: the next datagram waits in the socket

        tr, _ = await loop.create_datagram_endpoint(Busy, local_addr=("127.0.0.1", 0))
        sock = tr.get_extra_info("socket")
        assert kstamp.enable(sock)
        fd = sock.fileno()
        await asyncio.sleep(0.05)  # stamping warms up
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = time.monotonic()
        for _ in range(4):
            out.sendto(b"x", tr.get_extra_info("sockname"))
        await asyncio.sleep(0.2)
        tr.close()
        out.close()
        return sent, got

    sent, got = asyncio.run(main())
    assert len(got) == 4
    for stamp, read in got:
        assert stamp is not None
        assert abs(stamp - sent) < 0.003, (stamp - sent) * 1e3  # at the socket when sent
    assert got[-1][1] - sent > 0.025  # while the loop read the last one ≥ 30 ms later


def test_no_stamp_without_a_socket():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = a.fileno()
    a.close()
    assert kstamp.last_read(fd) is None  # closed: no stamp, the caller keeps its own
    assert kstamp.last_read(-1) is None
