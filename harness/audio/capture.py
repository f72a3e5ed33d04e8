"""The capture: one call's two channels on the harness host's monotonic clock (design.md §1).

ch0 = mic (what the harness sent, at the instant it left), ch1 = ear (agent audio at its playout instant).
`t0_mono` is the host `time.monotonic()` of sample 0, so any sample index maps to a host time and back.
On disk: a stereo 16-bit WAV plus a sidecar JSON `<file>.json` holding `t0_mono`, the rate and metadata.
"""

from __future__ import annotations

import json
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
        from harness.audio.wavio import write_wav

        path = Path(path)
        side = sidecar_path(path)
        if not force:
            for p in (path, side):
                if p.exists():
                    raise VlhError(f"{p}: already exists; use --force to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, np.stack([self.mic, self.ear], axis=1), self.sample_rate, force=True)
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
    """A growing two-channel buffer that places stamped chunks at their sample positions.

    Transports write into it while a call runs; `capture()` freezes it. Writes that overlap add
    (mixing), gaps stay silent — so placement errors are audible/visible, never hidden.
    """

    def __init__(self, t0_mono: float, sample_rate: int = SAMPLE_RATE, reserve_s: float = 60.0):
        self.t0_mono = t0_mono
        self.sample_rate = sample_rate
        self._buf = [np.zeros(int(reserve_s * sample_rate), np.float32) for _ in range(2)]
        self._len = [0, 0]

    def place(self, ch: int, t_mono: float, samples: np.ndarray) -> int:
        """Write `samples` so that its first sample sits at host time `t_mono`. Returns the start index."""
        start = int(round((t_mono - self.t0_mono) * self.sample_rate))
        self.write_at(ch, start, samples)
        return start

    def write_at(self, ch: int, start: int, samples: np.ndarray) -> None:
        if start < 0:
            samples = samples[-start:]
            start = 0
        end = start + len(samples)
        self.extend(ch, end)
        self._buf[ch][start:end] += samples

    def extend(self, ch: int, end: int) -> None:
        """Channel `ch` holds (silent) samples up to `end`: what writing zeros there would do, without the work."""
        if end > len(self._buf[ch]):
            grown = np.zeros(max(end, 2 * len(self._buf[ch])), np.float32)
            grown[: len(self._buf[ch])] = self._buf[ch]
            self._buf[ch] = grown
        self._len[ch] = max(self._len[ch], end)

    def length(self) -> int:
        return max(self._len)

    def capture(self, meta: dict | None = None) -> Capture:
        n = self.length()
        return Capture(self._buf[0][:n].copy(), self._buf[1][:n].copy(), self.t0_mono, self.sample_rate,
                       dict(meta or {}))
