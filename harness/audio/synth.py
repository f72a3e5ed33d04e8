"""Utterances: text → speech (pyttsx3's espeak driver) or a WAV file → float32 mono 48 kHz.

Synthesis is cached on disk, keyed by (text, voice, rate, engine version); `ENGINE_RUNS` counts how often the
engine really ran in this process (a cache hit leaves it unchanged). `sharpen` trims an utterance so it starts and
ends inside loud (voiced) material with short raised-cosine fades: its first and last sample are then known exactly,
which is what the reference agent and the accuracy tests need.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.audio import SAMPLE_RATE
from harness.audio.resample import resample
from harness.audio.wavio import read_wav
from harness.errors import VlhError

ESPEAK_RATE = 22050  # what pyttsx3's espeak driver writes
RATE_RANGE = (80, 1000)  # words/min espeak-ng honours (below 80 it ignores the setting)
DEFAULT_RATE = 175
CACHE_FORMAT = 1

ENGINE_RUNS = 0  # times the TTS engine actually synthesised in this process
_lock = threading.Lock()


def default_cache_dir() -> Path:
    """`$VLH_CACHE_DIR`, else `recordings/cache/` of the source checkout, else `~/.cache/vlh/tts`."""
    env = os.environ.get("VLH_CACHE_DIR")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").exists():
        return root / "recordings" / "cache"
    return Path.home() / ".cache" / "vlh" / "tts"


@lru_cache(maxsize=1)
def engine_version() -> str:
    from importlib.metadata import version

    from pyttsx3.drivers import _espeak

    return f"pyttsx3-{version('pyttsx3')}/espeak-ng-{_espeak.Info(None).decode()}"


@lru_cache(maxsize=1)
def _engine():
    """The process's one pyttsx3 espeak engine, warmed up so later property changes apply at once.

    espeak-ng runs in its asynchronous mode under pyttsx3: property changes go through a command queue that a
    worker thread drains, and pyttsx3's end-of-loop `Cancel()` drops whatever is still queued. So every change
    is followed by waiting until espeak is idle and reads back the value (see `_apply`).
    """
    import pyttsx3

    eng = pyttsx3.init("espeak")
    with tempfile.TemporaryDirectory(prefix="vlh-tts-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        eng.save_to_file("warm up", str(Path(tmp) / "w.wav"))
        eng.runAndWait()
        _wait_idle()
    return eng


def _espeak():
    from pyttsx3.drivers import _espeak

    return _espeak


@lru_cache(maxsize=1)
def _current_rate_fn():
    # pyttsx3 binds espeak_GetParameter without its `current` argument, so its reading is unreliable.
    import ctypes

    fn = _espeak().dll.espeak_GetParameter
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    return lambda: fn(_espeak().RATE, 1)


def _current_voice() -> str | None:
    v = _espeak().GetCurrentVoice()
    return v.contents.identifier.decode().lower() if v and v.contents.identifier else None


def _wait_idle(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _espeak().IsPlaying():
        if time.monotonic() > deadline:
            raise VlhError("espeak-ng stayed busy for 5 s; is another program using it?")
        time.sleep(0.001)


def _apply(eng, vid: str, rate: int) -> bool:
    """Set voice and rate and wait until espeak really uses them. False if it did not take them."""
    eng.setProperty("voice", vid)
    eng.setProperty("rate", rate)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        _wait_idle()
        if _current_rate_fn()() == rate and _current_voice() == vid:
            return True
        time.sleep(0.002)
    return False


@lru_cache(maxsize=1)
def voices() -> dict[str, str]:
    """espeak voice id → name, e.g. {'gmw/en-us': 'English (America)', ...}."""
    return {v.id: v.name for v in _engine().getProperty("voices")}


def resolve_voice(voice: str | None) -> str | None:
    """Accept an id ('gmw/en-us'), its short form ('en-us') or a name ('English (America)')."""
    if voice is None:
        return None
    known = voices()
    want = voice.strip().lower()
    for vid, name in known.items():
        if want in (vid, vid.split("/")[-1], name.lower()):
            return vid
    en = ", ".join(sorted(v for v in known if v.split("/")[-1].startswith("en")))
    raise VlhError(f"voice {voice!r}: espeak-ng has no such voice (English ones: {en})")


def synthesize(text: str, voice: str | None = None, rate: int | None = None,
               cache_dir: str | Path | None = None) -> np.ndarray:
    """Speak `text` with espeak-ng; returns float32 mono at 48 kHz. Cached on disk."""
    text = " ".join(str(text).split())
    if not text:
        raise VlhError("cannot synthesise an empty text")
    rate = DEFAULT_RATE if rate is None else int(rate)
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise VlhError(f"speech rate {rate} words/min: espeak-ng honours {RATE_RANGE[0]}–{RATE_RANGE[1]}")
    vid = resolve_voice(voice)
    key_src = json.dumps([CACHE_FORMAT, text, vid, rate, engine_version()])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cfile = cdir / f"{key}.npy"
    if cfile.exists():
        try:
            audio = np.load(cfile, allow_pickle=False)
            if audio.dtype == np.float32 and audio.ndim == 1 and len(audio):
                return audio
        except (OSError, ValueError):
            pass  # damaged cache entry: synthesise again and replace it
    raw = _run_engine(text, vid, rate)
    _check(raw, text, rate, vid)
    audio = resample(raw, ESPEAK_RATE, SAMPLE_RATE)
    cdir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cdir, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, audio, allow_pickle=False)
    os.replace(tmp, cfile)  # atomic: concurrent writers never leave half a file
    return audio


def _run_engine(text: str, vid: str | None, rate: int) -> np.ndarray:
    global ENGINE_RUNS
    vid = vid or "gmw/en"
    with _lock, tempfile.TemporaryDirectory(prefix="vlh-tts-") as tmp:
        eng = _engine()
        out = Path(tmp) / "u.wav"
        for _attempt in range(3):
            if not _apply(eng, vid, rate):
                continue
            with contextlib.redirect_stdout(io.StringIO()):  # the driver prints "Audio saved to …"
                eng.save_to_file(text, str(out))
                eng.runAndWait()
                _wait_idle()
            ENGINE_RUNS += 1
            # the values in force during synthesis are still the current ones afterwards
            if out.exists() and out.stat().st_size > 44 and _current_rate_fn()() == rate \
                    and _current_voice() == vid:
                break
            out.unlink(missing_ok=True)
        else:
            raise VlhError(f"espeak-ng did not take voice {vid!r} at rate {rate} (it has "
                           f"{_current_voice()!r} at {_current_rate_fn()()}), or wrote no audio for {text[:40]!r}")
        audio, sr = read_wav(out)
    if sr != ESPEAK_RATE or audio.ndim != 1:
        raise VlhError(f"espeak-ng wrote unexpected audio ({sr} Hz, shape {audio.shape}) for {text[:40]!r}")
    return audio


def _check(raw: np.ndarray, text: str, rate: int, vid: str | None) -> None:
    """Non-empty, audible, and a duration plausible for the text at this rate."""
    loud = np.flatnonzero(np.abs(raw) > 0.01)
    if len(loud) == 0:
        raise VlhError(f"espeak-ng produced silence for {text[:40]!r} (voice {vid}, rate {rate})")
    spoken = (loud[-1] - loud[0]) / ESPEAK_RATE
    units = max(1.0, sum(max(1.0, len(w) / 6) for w in text.split()))  # ~words, long words count more
    expected = units * 60.0 / rate
    if not 0.3 * expected - 0.2 <= spoken <= 3.0 * expected + 0.5:
        raise VlhError(f"espeak-ng output for {text[:40]!r} lasts {spoken:.2f} s, implausible for "
                       f"{units:.0f} words at {rate} words/min (expected about {expected:.2f} s)")


def load_utterance(path: str | Path) -> np.ndarray:
    """A WAV file as float32 mono 48 kHz (channels averaged, any rate resampled)."""
    audio, sr = read_wav(path)
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)
    if not np.any(np.abs(audio) > 1e-4):
        raise VlhError(f"{path}: the utterance is silent")
    return resample(audio, sr, SAMPLE_RATE)


def envelope(audio: np.ndarray, sr: int, win_ms: float = 10.0) -> np.ndarray:
    """Centred short-time RMS envelope of the 80–4000 Hz band (where voicing lives), one value per sample."""
    from scipy.signal import butter, sosfiltfilt

    audio = sosfiltfilt(butter(4, [80.0, min(4000.0, 0.45 * sr)], btype="bandpass", fs=sr, output="sos"),
                        audio.astype(np.float64))
    w = max(1, int(round(sr * win_ms / 1000)))
    c = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    n = len(audio)
    idx = np.arange(n)
    lo = np.clip(idx - w // 2, 0, n)
    hi = np.clip(idx - w // 2 + w, 0, n)
    return np.sqrt(np.maximum(c[hi] - c[lo], 0.0) / w)


def sharpen(audio: np.ndarray, sr: int = SAMPLE_RATE, fade_ms: float = 2.0,
            threshold_db: float = -20.0, win_ms: float = 2.5, sustain_ms: float = 10.0) -> tuple[np.ndarray, dict]:
    """Trim so the utterance starts and ends inside voiced sound: at the first and last sample where both the
    `win_ms` envelope (a glottal pulse) and the `sustain_ms` envelope (sustained voicing, not a lone pulse) of
    the 80–4000 Hz band are within `threshold_db` of their peaks — not in the hiss of a fricative, not in a
    pitch period's valley.
    Returns (audio, info): the trimmed audio begins with a `fade_ms` raised-cosine fade-in and ends with a
    fade-out, so its speech starts at sample 0 and ends at sample len(audio) exactly. info holds
    `start`/`end` (those boundaries in the returned audio), `source_start`/`source_end` (where the cut was made
    in the input) and `fade` (fade length in samples).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or len(audio) == 0:
        raise VlhError("sharpen: needs non-empty mono audio")
    env = envelope(audio, sr, win_ms)
    sus = envelope(audio, sr, sustain_ms)
    peak = float(env.max())
    if peak <= 0:
        raise VlhError("sharpen: the audio is silent")
    k = 10 ** (threshold_db / 20)
    above = np.flatnonzero((env >= peak * k) & (sus >= float(sus.max()) * k))
    s, e = int(above[0]), int(above[-1]) + 1
    out = audio[s:e].copy()
    nf = min(int(round(sr * fade_ms / 1000)), len(out) // 2)
    if nf > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(nf) + 0.5) / nf)).astype(np.float32)
        out[:nf] *= ramp
        out[-nf:] *= ramp[::-1]
    return out, {"start": 0, "end": len(out), "source_start": s, "source_end": e, "fade": nf}


def build_conversation(exchanges, *, voices=("gmw/en-us", "gmw/en-gb-x-rp"), gaps_s=(0.5,), between_s=0.6,
                       lead_s=0.7, noise_db: float | None = None, comfort_noise_db: float | None = None,
                       comfort_ms: float = 80.0, peak: float = 0.5, threshold_db: float = -20.0, rate=None,
                       seed: int = 0, sr: int = SAMPLE_RATE, cache_dir=None) -> tuple[np.ndarray, list[dict]]:
    """A stereo conversation (ch0 user, ch1 agent) with every boundary known to the sample.

    `exchanges`: [(user, agent), ...]; each side is a text, a list of texts and pauses in seconds (floats)
    joined in order, or None (no reply). Each text is synthesised, `sharpen`ed at `threshold_db` and scaled to
    `peak`. The agent answers `gaps_s[i % len(gaps_s)]` seconds after the user's end. `noise_db`: white noise on
    both channels, its RMS that many dB under `peak`; `comfort_noise_db`: `comfort_ms` of white noise that many
    dB under `peak` on the ear just before each reply. Returns (audio (n, 2) float32, truth), truth one dict per
    exchange with user_start, user_end, agent_start, agent_end (samples; agent ones None without a reply).
    """
    rng = np.random.default_rng(seed)

    def side(spec, voice):
        if spec is None:
            return None
        parts = []
        for item in ([spec] if isinstance(spec, str) else spec):
            if isinstance(item, (int, float)):
                parts.append(np.zeros(int(round(item * sr)), np.float32))
            else:
                a, _ = sharpen(synthesize(item, voice, rate, cache_dir), sr, threshold_db=threshold_db)
                parts.append(a)
        a = np.concatenate(parts)
        return (a * (peak / np.abs(a).max())).astype(np.float32)

    placed, truth = [], []
    t = int(round(lead_s * sr))
    for i, (u_spec, a_spec) in enumerate(exchanges):
        u, a = side(u_spec, voices[0]), side(a_spec, voices[1])
        us, ue = t, t + len(u)
        rec = {"user_start": us, "user_end": ue, "agent_start": None, "agent_end": None}
        t = ue
        if a is not None:
            as_ = ue + int(round(gaps_s[i % len(gaps_s)] * sr))
            rec.update(agent_start=as_, agent_end=as_ + len(a))
            t = as_ + len(a)
        placed.append((u, a, rec))
        truth.append(rec)
        t += int(round(between_s * sr))
    x = np.zeros((t + int(round(lead_s * sr)), 2), np.float32)
    cn = int(round(comfort_ms / 1000 * sr))
    for u, a, rec in placed:
        x[rec["user_start"] : rec["user_end"], 0] += u
        if a is not None:
            x[rec["agent_start"] : rec["agent_end"], 1] += a
            if comfort_noise_db is not None:
                s0 = max(0, rec["agent_start"] - cn)
                x[s0 : rec["agent_start"], 1] += (rng.standard_normal(rec["agent_start"] - s0)
                                                  * peak * 10 ** (-comfort_noise_db / 20))
    if noise_db is not None:
        x += (rng.standard_normal(x.shape) * peak * 10 ** (-noise_db / 20)).astype(np.float32)
    return x, truth
