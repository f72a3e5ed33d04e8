"""The capture: one call's two channels on the harness host's monotonic clock (design.md §1).

ch0 = mic (what the harness sent, at the instant it left), ch1 = ear (agent audio at its playout instant).
`t0_mono` is the host `time.monotonic()` of sample 0, so any sample index maps to a host time and back.
On disk: a stereo 16-bit WAV plus a sidecar JSON `<file>.json` holding `t0_mono`, the rate and metadata.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.audio import SAMPLE_RATE
from harness.errors import VlhError

MIC, EAR = 0, 1


@dataclass
class Capture:
    mic: np.ndarray
    ear: np.ndarray
    t0_mono: float
    sample_rate: int = SAMPLE_RATE
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = max(len(self.mic), len(self.ear))
        self.mic = _pad(np.asarray(self.mic, dtype=np.float32), n)
        self.ear = _pad(np.asarray(self.ear, dtype=np.float32), n)

    def __len__(self) -> int:
        return len(self.mic)

    @property
    def duration_s(self) -> float:
        return len(self) / self.sample_rate

    def time_of(self, index: float) -> float:
        """Host monotonic time of (fractional) sample `index`."""
        return self.t0_mono + index / self.sample_rate

    def sample_of(self, t_mono: float) -> int:
        """Nearest sample index of host monotonic time `t_mono`."""
        return int(round((t_mono - self.t0_mono) * self.sample_rate))

    def channel(self, ch: int) -> np.ndarray:
        return self.mic if ch == MIC else self.ear

    def write(self, path: str | Path, force: bool = False) -> Path:
        from harness.audio.wavio import write_wav_channels

        path = Path(path)
        side = sidecar_path(path)
        if not force:
            for p in (path, side):
                if p.exists():
                    raise VlhError(f"{p}: already exists; use --force to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav_channels(path, [self.mic, self.ear], self.sample_rate)  # in chunks: the capture may be on disk
        side.write_text(
            json.dumps(
                {"t0_mono": self.t0_mono, "sample_rate": self.sample_rate, "channels": ["mic", "ear"],
                 "meta": self.meta},
                indent=1, default=str,
            )
        )
        return path

    @classmethod
    def read(cls, path: str | Path) -> "Capture":
        from harness.audio.wavio import read_wav

        path = Path(path)
        audio, sr = read_wav(path)
        if audio.ndim != 2 or audio.shape[1] < 2:
            raise VlhError(f"{path}: a capture needs 2 channels (ch0 mic, ch1 ear); this file has 1")
        side = sidecar_path(path)
        t0, meta = 0.0, {}
        if side.exists():
            try:
                info = json.loads(side.read_text())
                t0, meta = float(info["t0_mono"]), info.get("meta", {})
            except (ValueError, KeyError) as exc:
                raise VlhError(f"{side}: not a vlh capture sidecar ({exc}); delete it or restore it") from None
        return cls(audio[:, 0], audio[:, 1], t0, sr, meta)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x
    return np.concatenate([x, np.zeros(n - len(x), dtype=np.float32)])


class Timeline:
    """A growing two-channel buffer that places stamped chunks at their sample positions, streamed to disk.

    Transports write into it while a call runs; `capture()` freezes it. Writes that overlap add
    (mixing), gaps stay silent — so placement errors are audible/visible, never hidden.

    Memory stays flat in call length: samples live in `CHUNK_S` chunks (float32, as before); once a chunk lies
    more than `resident_s` behind the furthest sample written it is written to an unlinked temporary file (one
    raw float32 file per channel, in `$VLH_CAPTURE_DIR` or the system temp folder) and dropped from RAM. A late
    write into a chunk already on disk is added there (read, add, write back), so the samples are exactly those
    an all-in-RAM buffer would hold. `capture()` maps the files (copy-on-write): the Capture's channels are numpy
    arrays backed by the disk, and the file goes away with the last reference to them.
    """

    CHUNK_S = 10.0

    def __init__(self, t0_mono: float, sample_rate: int = SAMPLE_RATE, reserve_s: float = 60.0, *,
                 resident_s: float = 30.0, chunk_s: float | None = None, spill_dir: str | Path | None = None):
        # reserve_s: kept for callers of the in-RAM buffer; chunks are allocated as they are written
        self.t0_mono = t0_mono
        self.sample_rate = sample_rate
        self.chunk = max(1, int(round((chunk_s or self.CHUNK_S) * sample_rate)))
        self.resident_chunks = max(1, int(math.ceil(resident_s * sample_rate / self.chunk)))
        self.spill_dir = spill_dir
        self._chunks: list[dict[int, np.ndarray]] = [{}, {}]
        self._files: list = [None, None]  # unlinked temporary files, opened at the first spill
        self._on_disk: list[set[int]] = [set(), set()]
        self._len = [0, 0]
        self.spilled_bytes = 0

    def place(self, ch: int, t_mono: float, samples: np.ndarray) -> int:
        """Write `samples` so that its first sample sits at host time `t_mono`. Returns the start index."""
        start = int(round((t_mono - self.t0_mono) * self.sample_rate))
        self.write_at(ch, start, samples)
        return start

    def write_at(self, ch: int, start: int, samples: np.ndarray) -> None:
        if start < 0:
            samples = samples[-start:]
            start = 0
        samples = np.asarray(samples, np.float32)
        end = start + len(samples)
        self.extend(ch, end)
        c = self.chunk
        pos = start
        while pos < end:
            k = pos // c
            lo, hi = pos - k * c, min(c, end - k * c)
            part = samples[pos - start:pos - start + hi - lo]
            buf = self._chunks[ch].get(k)
            if buf is None and k in self._on_disk[ch]:
                self._add_on_disk(ch, k, lo, part)
            else:
                if buf is None:
                    buf = self._chunks[ch][k] = np.zeros(c, np.float32)
                buf[lo:hi] += part
            pos = k * c + hi
        self._spill_old(ch)

    def extend(self, ch: int, end: int) -> None:
        """Channel `ch` holds (silent) samples up to `end`: what writing zeros there would do, without the work."""
        self._len[ch] = max(self._len[ch], end)

    def length(self) -> int:
        return max(self._len)

    @property
    def resident_bytes(self) -> int:
        """Bytes of samples held in RAM (the rest is on disk)."""
        return sum(b.nbytes for d in self._chunks for b in d.values())

    # ---- the disk side -------------------------------------------------------------------------------------
    def _file(self, ch: int):
        if self._files[ch] is None:
            d = self.spill_dir or os.environ.get("VLH_CAPTURE_DIR") or None
            self._files[ch] = tempfile.TemporaryFile(prefix=f"vlh-capture-{'mic' if ch == MIC else 'ear'}-",
                                                     suffix=".f32", dir=d)
        return self._files[ch]

    def _write_chunk(self, ch: int, k: int, buf: np.ndarray) -> None:
        os.pwrite(self._file(ch).fileno(), buf.tobytes(), k * self.chunk * 4)
        self._on_disk[ch].add(k)

    def _add_on_disk(self, ch: int, k: int, lo: int, part: np.ndarray) -> None:
        fd, off = self._file(ch).fileno(), (k * self.chunk + lo) * 4
        old = np.frombuffer(os.pread(fd, 4 * len(part), off), np.float32)
        cur = np.zeros(len(part), np.float32)
        cur[:len(old)] = old  # a hole or the file's end reads short: silence
        cur += part
        os.pwrite(fd, cur.tobytes(), off)

    def _spill_old(self, ch: int) -> None:
        d = self._chunks[ch]
        if len(d) <= self.resident_chunks:
            return
        head = (max(self._len) - 1) // self.chunk
        for k in sorted(d):
            if k > head - self.resident_chunks:
                break
            self._write_chunk(ch, k, d.pop(k))
            self.spilled_bytes += 4 * self.chunk

    def capture(self, meta: dict | None = None) -> Capture:
        n = self.length()
        on_disk = any(f is not None for f in self._files)  # a long call: both channels from disk
        chans = []
        for ch in (MIC, EAR):
            if not on_disk:  # a short call: all in RAM, as before
                x = np.zeros(n, np.float32)
                for k, buf in self._chunks[ch].items():
                    a = k * self.chunk
                    if a < n:
                        x[a:min(n, a + self.chunk)] = buf[:min(n, a + self.chunk) - a]
                chans.append(x)
                continue
            for k, buf in list(self._chunks[ch].items()):  # everything to disk, then map it
                self._write_chunk(ch, k, buf)
            self._chunks[ch].clear()
            f = self._file(ch)
            f.flush()
            os.ftruncate(f.fileno(), 4 * n)  # holes and the tail read as zeros
            chans.append(np.memmap(f, np.float32, mode="c", shape=(n,)) if n else np.zeros(0, np.float32))
        return Capture(chans[0], chans[1], self.t0_mono, self.sample_rate, dict(meta or {}))
