"""Peak memory of `vlh analyze` against recording length: a child process analyses a generated stereo 48 kHz WAV
(a synthesised conversation tiled to 10 min, 1 h, 2 h; written to /tmp, deleted after) and its peak RSS
(`ru_maxrss` of the child, from wait4) is reported. The goal (issue 16): ≤ 300 MB at any length.

    .venv/bin/python bench/analyze_memory.py                      # 10 min, 1 h, 2 h
    .venv/bin/python bench/analyze_memory.py --minutes 10 60      # chosen lengths
    .venv/bin/python bench/analyze_memory.py --update-readme      # also write the rows into bench/README.md
    .venv/bin/python bench/analyze_memory.py --whole-file --minutes 10   # the old way: the whole file at once
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import insert_rows, machine  # noqa: E402
from analyze_speed import recording  # noqa: E402

SR = 48000
MARKER = "<!-- analyze_memory rows -->"


def write_long(path: Path, minutes: float) -> None:
    """Write the tiled conversation as 16-bit stereo, block by block (this process never holds the file)."""
    block, _ = recording(5.0)  # five minutes, repeated
    pcm = np.clip(np.round(block * 32768.0), -32768, 32767).astype("<i2")
    n = int(minutes * 60 * SR)
    with open(path, "wb") as f:
        data = n * 4
        f.write(b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, SR, SR * 4, 4, 16))
        f.write(b"data" + struct.pack("<I", data))
        left = n
        while left > 0:
            k = min(left, len(pcm))
            f.write(pcm[:k].tobytes())
            left -= k


WHOLE_FILE = ("import sys, json; from harness.audio.wavio import read_wav; from harness.audio.turns import find_turns; "
              "x, sr = read_wav(sys.argv[1]); t = find_turns(x[:, 0], x[:, 1], sr); "
              "print(json.dumps({'turns': [u.to_dict() for u in t]}))")


def measure(path: Path, whole_file: bool = False) -> tuple[float, int]:
    """(wall seconds, turns found) of `vlh analyze PATH --json` (or, `whole_file`, of `find_turns` on the whole
    file read at once, as analyze did before) in a child process. Its peak RSS is the caller's RUSAGE_CHILDREN,
    which is why each measurement runs in a fresh `--child` process."""
    t = time.perf_counter()
    cmd = (["-c", WHOLE_FILE] if whole_file else ["-m", "harness", "analyze", "--json"]) + [str(path)]
    proc = subprocess.Popen([sys.executable] + cmd, cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"vlh analyze failed ({proc.returncode}): {err.decode()[-500:]}")
    return wall, len(json.loads(out)["turns"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 120])
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--whole-file", action="store_true", help="measure the whole-file analysis instead")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one measurement in a fresh process: RUSAGE_CHILDREN then holds only this analyze
        import resource

        wall, turns = measure(args.child, args.whole_file)
        print(json.dumps({"wall_s": wall, "turns": turns,
                          "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
        return 0
    rows = []
    print("| date | recording | analysis | peak RSS | wall | turns | load avg |", flush=True)
    for minutes in args.minutes:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = Path(tmp) / "long.wav"
            write_long(path, minutes)
            size = path.stat().st_size
            res = json.loads(subprocess.run([sys.executable, __file__, "--child", str(path)]
                                            + (["--whole-file"] if args.whole_file else []), check=True,
                                            capture_output=True, text=True).stdout)
        label = f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"
        how = "whole file at once (before)" if args.whole_file else "`vlh analyze`, block-wise"
        rows.append(f"| {datetime.date.today().isoformat()} | {label} stereo 48 kHz ({size / 1e9:.2f} GB) | {how} | "
                    f"**{res['peak_mb']:.0f} MB** | {res['wall_s']:.0f} s | {res['turns']} | {os.getloadavg()[0]:.1f} |")
        print(rows[-1], flush=True)
    print(f"machine: {machine()}")
    if args.update_readme:
        keys = ["|".join(r.split("|")[2:4]) for r in rows]
        insert_rows(MARKER, rows, replaced=lambda ln: any(k in ln for k in keys), machine_of="analyze_memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
