"""One turn's sound for the report: a min/max envelope of mic and ear, and a short WAV clip as a data URI.

Only the window around the turn is read (memory-mapped), so a long recording costs no more than a short one.
Times are in ms relative to the turn's `user_speech_end` (0 = the user stops talking), on the capture's clock:
the recording's sample 0 is `t0_mono` from its sidecar JSON (or, without one, from the turn's `*_s` columns).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import wave
from pathlib import Path
from urllib.parse import quote

import numpy as np
from scipy.io import wavfile

from harness.audio.capture import sidecar_path
from harness.audio.resample import resample

PRE_S, POST_S = 2.5, 3.0  # user speech shown before its end; reply heard after its start
MARGIN_S = 0.3
CLIP_RATE = 16000
T0_TOL_S = 1e-4  # the capture and the turn share one clock (tests/test_webrtc_client.py): a note past this
ENVELOPE_BINS = 1000


def recording_link(recording: Path, report_dir: Path, offset_s: float | None = None) -> str:
    """Relative URL from the report's folder to the recording (media fragment #t= at the turn)."""
    rel = os.path.relpath(recording.resolve(), report_dir.resolve())
    url = "/".join(quote(part) for part in Path(rel).parts)
    if offset_s is not None:
        url += f"#t={max(0.0, offset_s):.2f}"
    return url


def recording_t0(recording: Path, turn: dict) -> tuple[float | None, str | None]:
    """t0_mono of the recording: sidecar first, else from the turn's columns. Returns (t0, note)."""
    side = sidecar_path(recording)
    t0_cols = None
    if _finite(turn.get("user_speech_end_mono")) and _finite(turn.get("user_speech_end_s")):
        t0_cols = turn["user_speech_end_mono"] - turn["user_speech_end_s"]
    if side.is_file():
        try:
            t0 = float(json.loads(side.read_text())["t0_mono"])
        except (ValueError, KeyError, TypeError):
            return t0_cols, f"{side.name} is unreadable; placed the clip with the turn's *_s columns"
        if t0_cols is not None and abs(t0 - t0_cols) > T0_TOL_S:
            return t0, (f"{side.name} t0_mono and the turn's *_s columns disagree by "
                        f"{(t0 - t0_cols) * 1e3:.2f} ms")
        return t0, None
    return t0_cols, (None if t0_cols is not None else f"{side.name} is missing and the turn has no *_s columns")


def turn_clip(recording: Path, turn: dict, report_dir: Path) -> dict:
    """Envelope + audio of one turn, or {"error": ...} saying why there is none."""
    rel = recording_link(recording, report_dir)
    if not recording.is_file():
        return {"error": f"recording {rel} not found", "recording": rel}
    t0, note = recording_t0(recording, turn)
    if t0 is None:
        return {"error": note, "recording": rel}
    try:
        sr, data = wavfile.read(recording, mmap=True)
    except (ValueError, OSError) as exc:
        return {"error": f"recording {rel} unreadable ({exc})", "recording": rel}
    if data.ndim != 2 or data.shape[1] < 2:
        return {"error": f"recording {rel} is not a 2-channel capture (ch0 mic, ch1 ear)", "recording": rel}
    ref = float(turn["user_speech_end_mono"])
    a0 = float(turn["agent_audio_start_mono"])
    us0 = turn.get("user_speech_start_mono")
    ae = turn.get("agent_audio_end_mono")
    start = max(float(us0) if _finite(us0) else ref - PRE_S, ref - PRE_S) - MARGIN_S
    end = min(float(ae) if _finite(ae) else a0 + POST_S, a0 + POST_S) + MARGIN_S
    i0 = max(0, int(math.floor((start - t0) * sr)))
    i1 = min(len(data), int(math.ceil((end - t0) * sr)))
    if i1 - i0 < sr // 100:
        return {"error": f"the turn lies outside recording {rel}", "recording": rel}
    win = _as_float(np.asarray(data[i0:i1, :2]))
    start_ms = ((t0 + i0 / sr) - ref) * 1e3
    env = envelope(win, sr)
    out = {
        "start_ms": round(start_ms, 3), "bin_ms": round(env["bin"] / sr * 1e3, 6),
        "mic": env["ch"][0], "ear": env["ch"][1],
        "audio": wav_data_uri(win, sr),
        "recording": recording_link(recording, report_dir, i0 / sr),
        "offset_s": round(i0 / sr, 3), "duration_s": round((i1 - i0) / sr, 3),
    }
    if note:
        out["note"] = note
    return out


def envelope(x: np.ndarray, sr: int, bins: int = ENVELOPE_BINS) -> dict:
    """Per channel [mins, maxs] over `bins` equal bins (the last bin may be short)."""
    n = len(x)
    b = max(1, int(math.ceil(n / bins)))
    pad = (-n) % b
    chans = []
    for c in range(x.shape[1]):
        v = np.concatenate([x[:, c], np.full(pad, np.nan, dtype=np.float32)]).reshape(-1, b)
        chans.append([np.round(np.nanmin(v, axis=1), 4).tolist(), np.round(np.nanmax(v, axis=1), 4).tolist()])
    return {"bin": b, "ch": chans}


def wav_data_uri(x: np.ndarray, sr: int, rate: int = CLIP_RATE) -> str:
    """16-bit stereo WAV at `rate` Hz (ch0 mic left, ch1 ear right) as a data: URI."""
    y = resample(x, sr, rate)
    ints = np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(ints.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(ints.tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _as_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype == np.int32:
        return (a.astype(np.float64) / 2147483648.0).astype(np.float32)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    return a.astype(np.float32)


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
