"""The heap over one long call, with and without the fixed mmap threshold (issue 19.3, `harness/devices/heap.py`).

Runs one call of `--turns` turns (bench/soak.py's long mode: reference agent in its own process, reply "Okay.") and
prints every 10 turns this process's RssAnon and glibc's `mallinfo2` (heap, mapped, in use, free). `--dynamic` keeps
glibc's dynamic threshold (what vlh did before the fix). Run the two modes side by side to compare:

    .venv/bin/python bench/soak_heap.py --turns 449 > /tmp/fixed.log &
    .venv/bin/python bench/soak_heap.py --turns 449 --dynamic > /tmp/dynamic.log &
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import soak  # noqa: E402
from scale import rss_mb  # noqa: E402

from harness.devices.heap import mallinfo  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=449, help="turns in the call (449 ≈ 20 min)")
    ap.add_argument("--dynamic", action="store_true", help="leave glibc's mmap threshold dynamic (before the fix)")
    args = ap.parse_args(argv)
    if args.dynamic:
        import harness.measure.runner as runner

        runner.fix_mmap_threshold = lambda *a, **k: False
    n = {"k": 0}
    capture_mb = soak._Calls.capture_mb.__func__

    def each_turn(cls):  # soak calls this once per turn
        n["k"] += 1
        if n["k"] % 10 == 0 or n["k"] in (1, 5):
            m = mallinfo()
            heap = (f"heap {m.arena / 2**20:.1f}, mapped {m.hblkhd / 2**20:.1f}, in use {m.uordblks / 2**20:.1f}, "
                    f"free {m.fordblks / 2**20:.1f} MB") if m else "mallinfo2: not glibc"
            print(f"turn {n['k']}: RssAnon {rss_mb(key='RssAnon'):.1f} MB; {heap}", flush=True)
        return capture_mb(cls)

    soak._Calls.capture_mb = classmethod(each_turn)
    r = soak.run_mode("long", args.turns, 10, 1, Path(tempfile.mkdtemp()), "typical")
    print(f"{'dynamic' if args.dynamic else 'fixed'} threshold: {r['ok']} / {args.turns} ok; RssAnon at 1 min "
          f"{r['rss_anon_1min']:.1f} MB → end of call {r['rss_anon_end_of_call']:.1f} MB "
          f"(+{r['rss_anon_end_of_call'] - r['rss_anon_1min']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
