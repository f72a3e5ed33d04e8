"""fix_mmap_threshold: after a large block is freed, a large growing buffer still gets its own mapping (glibc)."""

import subprocess
import sys

import pytest

from harness.devices.heap import mallinfo

PROBE = r"""
import sys
from array import array
from harness.devices.heap import fix_mmap_threshold, mallinfo
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = bytearray(4 * 1024 * 1024)  # mapped (above the default threshold); freeing it raises a dynamic threshold
del big
before = mallinfo()
col = array("d")
for k in range(200_000):  # a per-frame column growing to 1.6 MB, reallocated as it grows
    col.append(k)
after = mallinfo()
print(after.hblkhd - before.hblkhd, after.arena - before.arena)
"""


@pytest.mark.skipif(mallinfo() is None, reason="glibc only")
@pytest.mark.parametrize("mode", ["dynamic", "fixed"])
def test_a_growing_column_lives_in_the_heap_unless_the_threshold_is_fixed(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    mapped, heap = (int(x) for x in out.split())
    if mode == "fixed":
        assert mapped >= 1_500_000 and heap < 500_000, (mapped, heap)  # in its own mapping, the heap untouched
    else:
        assert mapped < 100_000 and heap >= 1_500_000, (mapped, heap)  # glibc's dynamic threshold: in the heap
