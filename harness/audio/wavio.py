"""WAV in and out, with one clear error per bad file.

`read_wav` takes 16/24/32-bit integer PCM and 32/64-bit float (plain or WAVE_FORMAT_EXTENSIBLE) and returns
float32 in [-1, 1): shape (n,) for mono, (n, channels) otherwise. `write_wav` writes 16-bit PCM and never
overwrites an existing file unless asked to.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import VlhError

log = logging.getLogger(__name__)

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_FORMAT_NAMES = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


@dataclass(frozen=True)
class WavInfo:
    """Where a WAV file's samples are: `frames` frames of `channels` × `kind` at byte `offset`."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    kind: str  # i16, i24, i32, f32, f64
    offset: int

    @property
    def frame_bytes(self) -> int:
        return self.channels * {"i16": 2, "i24": 3, "i32": 4, "f32": 4, "f64": 8}[self.kind]


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32: (samples, sample_rate). Mono → shape (n,), else (n, channels)."""
    info = wav_info(path)
    audio = read_frames(info, 0, info.frames)
    return (audio[:, 0] if info.channels == 1 else audio), info.sample_rate


def read_frames(info: WavInfo, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) of a WAV as float32, shape (n, channels): only those bytes are read (no memory map,
    so a long file read piece by piece never holds more than the piece)."""
    start, stop = max(0, start), min(info.frames, stop)
    n = max(0, stop - start)
    with open(info.path, "rb") as f:
        f.seek(info.offset + start * info.frame_bytes)
        if info.kind == "i24":
            raw = np.fromfile(f, dtype=np.uint8, count=n * info.frame_bytes)
            b = raw.reshape(-1, 3).astype(np.int32)
            ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend
            audio = (ints.astype(np.float32) / np.float32(2**23))
        else:
            dtype = {"i16": "<i2", "i32": "<i4", "f32": "<f4", "f64": "<f8"}[info.kind]
            raw = np.fromfile(f, dtype=dtype, count=n * info.channels)
            if info.kind == "i16":
                audio = raw.astype(np.float32) / np.float32(32768.0)
            elif info.kind == "i32":
                audio = (raw.astype(np.float64) / 2147483648.0).astype(np.float32)
            else:
                audio = raw.astype(np.float32, copy=False)
                if not np.isfinite(audio).all():
                    raise VlhError(f"{info.path}: float WAV contains NaN or infinite samples")
    return audio.reshape(-1, info.channels)


def wav_info(path: str | Path) -> WavInfo:
    """The header of a WAV file, checked (one clear error per bad file); no samples are read."""
    path = Path(path)
    if not path.exists():
        raise VlhError(f"{path}: no such file")
    if path.is_dir():
        raise VlhError(f"{path}: is a directory, not a WAV file")
    size = path.stat().st_size
    if size == 0:
        raise VlhError(f"{path}: file is empty (0 bytes); expected a WAV recording")
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
            if len(head) >= 4 and head[:4] == b"RIFF":
                raise VlhError(f"{path}: truncated WAV header ({size} bytes)")
            raise VlhError(f"{path}: not a WAV file (no RIFF/WAVE header); convert it to WAV first")
        if head[:4] != b"RIFF":
            raise VlhError(f"{path}: {head[:4].decode()} WAV files are not supported; convert to a plain RIFF WAV")
        fmt = None
        data_off = data_len = None
        while True:
            ch = f.read(8)
            if len(ch) < 8:
                break
            cid, clen = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"fmt ":
                body = f.read(clen)
                if len(body) < 16 or len(body) < clen:
                    raise VlhError(f"{path}: truncated WAV header (fmt chunk cut short)")
                fmt = body
            elif cid == b"data":
                data_off, data_len = f.tell(), clen
                break
            else:
                f.seek(clen + (clen & 1), 1)
    if fmt is None:
        if data_off is not None:
            raise VlhError(f"{path}: WAV has a data chunk but no fmt chunk before it; the file is damaged")
        raise VlhError(f"{path}: truncated WAV header (no fmt chunk)")
    if data_off is None:
        raise VlhError(f"{path}: truncated WAV (no data chunk)")

    tag, channels, sr, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == EXTENSIBLE:
        if len(fmt) < 40:
            raise VlhError(f"{path}: truncated WAV header (short WAVE_FORMAT_EXTENSIBLE fmt chunk)")
        tag = struct.unpack("<H", fmt[24:26])[0]  # first two bytes of the SubFormat GUID
    kind = _sample_kind(path, tag, bits)
    if channels < 1:
        raise VlhError(f"{path}: WAV header says 0 channels; the file is damaged")
    if sr < 1000 or sr > 768000:
        raise VlhError(f"{path}: implausible sample rate {sr} Hz in the WAV header")
    width = bits // 8
    if block_align != width * channels:
        raise VlhError(f"{path}: inconsistent WAV header (block align {block_align} for {channels}×{bits}-bit)")

    available = size - data_off
    if data_len == 0xFFFFFFFF or data_len == 0 and available > 0:
        data_len = available  # streaming writers leave the size unset
    if data_len > available:
        log.warning("%s: data chunk claims %d bytes but only %d are present; reading what is there",
                    path, data_len, available)
        data_len = available
    frames = data_len // block_align
    if frames == 0:
        raise VlhError(f"{path}: WAV contains no audio samples")

    return WavInfo(path, int(sr), channels, frames, kind, data_off)


def _sample_kind(path: Path, tag: int, bits: int) -> str:
    if tag == PCM:
        if bits == 8:
            raise VlhError(f"{path}: 8-bit WAV is not supported; convert it to 16-bit PCM")
        if bits in (16, 24, 32):
            return f"i{bits}"
        raise VlhError(f"{path}: {bits}-bit integer WAV is not supported; use 16, 24 or 32-bit PCM")
    if tag == IEEE_FLOAT:
        if bits in (32, 64):
            return f"f{bits}"
        raise VlhError(f"{path}: {bits}-bit float WAV is not supported; use 32 or 64-bit float")
    name = _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04x}")
    raise VlhError(f"{path}: {name} WAV is not supported; convert it to 16-bit PCM")


def write_wav(path: str | Path, data: np.ndarray, sample_rate: int, force: bool = False) -> Path:
    """Write float audio (n,) or (n, channels) as 16-bit PCM, clipping to [-1, 1]."""
    path = Path(path)
    if path.exists() and not force:
        raise VlhError(f"{path}: already exists; use --force to overwrite it")
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[1] < 1:
        raise ValueError(f"write_wav: expected (n,) or (n, channels) audio, got shape {data.shape}")
    ints = np.clip(np.round(data.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")
    channels = data.shape[1]
    payload = ints.tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, PCM, channels, sample_rate, sample_rate * 2 * channels,
                                    2 * channels, 16)
    header += b"data" + struct.pack("<I", len(payload))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header)
        f.write(payload)
    return path


def write_wav_channels(path: str | Path, channels: list[np.ndarray], sample_rate: int,
                       chunk: int = 480_000) -> Path:
    """`write_wav(path, np.stack(channels, axis=1), …, force=True)`, byte for byte, written `chunk` samples at a
    time: a long (disk-backed) capture is never held in RAM whole."""
    path = Path(path)
    n = min(len(c) for c in channels) if channels else 0
    size = 2 * len(channels) * n
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, PCM, len(channels), sample_rate,
                                    sample_rate * 2 * len(channels), 2 * len(channels), 16)
    header += b"data" + struct.pack("<I", size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header)
        for a in range(0, n, chunk):
            block = np.stack([np.asarray(c[a:a + chunk]) for c in channels], axis=1)
            f.write(np.clip(np.round(block.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2").tobytes())
    return path
