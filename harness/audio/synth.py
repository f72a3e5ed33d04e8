"""Utterances: text → speech (an engine's CLI: espeak-ng, flite or Festival) or a WAV file → float32 mono 48 kHz.

Engines live one per module (`synth_espeak`, `synth_flite`, `synth_festival`) and are named here in `ENGINES`.
Each is called through its command-line program, so the same text, engine, voice and rate give byte-identical
samples on every run (see docs/synthesis.md for why pyttsx3 is no longer used). Synthesis is cached on disk, keyed
by (engine, engine version, voice, rate, text); `ENGINE_RUNS` counts how often an engine really ran in this process
(a cache hit leaves it unchanged). `sharpen` trims an utterance so it starts and ends inside loud (voiced) material
with short raised-cosine fades: its first and last sample are then known exactly, which is what the reference
agent and the accuracy tests need.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from harness.audio import SAMPLE_RATE
from harness.audio import synth_espeak, synth_festival, synth_flite
from harness.audio.resample import resample
from harness.audio.synth_cli import CliEngine
from harness.audio.wavio import read_wav
from harness.errors import VlhError

RATE_RANGE = (80, 1000)  # words/min espeak-ng honours (below 80 it ignores the setting); the others stretch
DEFAULT_RATE = 175
DEFAULT_ENGINE = "espeak"
CACHE_FORMAT = 2  # 2: engines called through their CLIs, engine name in the key

#: engine name → engine; what `--tts-engine` and a scenario turn's `engine:` accept
ENGINES: dict[str, CliEngine] = {e.name: e for e in (synth_espeak.ENGINE, synth_flite.ENGINE, synth_festival.ENGINE)}

ENGINE_RUNS = 0  # times a TTS engine actually synthesised in this process
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


def get_engine(name: str | None = None) -> CliEngine:
    """The engine called `name` (default espeak); a `VlhError` naming the known ones otherwise."""
    name = DEFAULT_ENGINE if name is None else str(name).strip().lower()
    try:
        return ENGINES[name]
    except KeyError:
        raise VlhError(f"TTS engine {name!r}: unknown (known: {', '.join(ENGINES)})") from None


def engine_version(engine: str | None = None) -> str:
    return get_engine(engine).version()


def voices(engine: str | None = None) -> dict[str, str]:
    """The engine's voice id → name, e.g. espeak: {'gmw/en-us': 'English (America)', ...}."""
    return get_engine(engine).voices()


def resolve_voice(voice: str | None, engine: str | None = None) -> str | None:
    """Accept an id ('gmw/en-us'), its short form ('en-us') or a name ('English (America)'). None stays None."""
    if voice is None:
        return None
    return get_engine(engine).resolve(voice)


def synthesize(text: str, voice: str | None = None, rate: int | None = None,
               cache_dir: str | Path | None = None, engine: str | None = None) -> np.ndarray:
    """Speak `text` with `engine` (default espeak-ng); returns float32 mono at 48 kHz. Cached on disk."""
    eng = get_engine(engine)
    text = " ".join(str(text).split())
    if not text:
        raise VlhError("cannot synthesise an empty text")
    rate = DEFAULT_RATE if rate is None else int(rate)
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise VlhError(f"speech rate {rate} words/min: engines are driven at {RATE_RANGE[0]}–{RATE_RANGE[1]} "
                       f"(espeak-ng honours {RATE_RANGE[0]}–{RATE_RANGE[1]})")
    vid = eng.resolve(voice)
    key_src = json.dumps([CACHE_FORMAT, eng.name, eng.version(), vid, rate, text])
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
    raw, sr = _run_engine(eng, text, vid, rate)
    _check(raw, text, rate, vid, sr, eng.name)
    audio = resample(raw, sr, SAMPLE_RATE)
    cdir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cdir, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, audio, allow_pickle=False)
    os.replace(tmp, cfile)  # atomic: concurrent writers never leave half a file
    return audio


def _run_engine(eng: CliEngine, text: str, vid: str, rate: int) -> tuple[np.ndarray, int]:
    global ENGINE_RUNS
    audio, sr = eng.run(text, vid, rate)
    with _lock:
        ENGINE_RUNS += 1
    return audio, sr


def _check(raw: np.ndarray, text: str, rate: int, vid: str | None, sr: int = 22050, engine: str = "espeak") -> None:
    """Non-empty, audible, and a duration plausible for the text at this rate."""
    loud = np.flatnonzero(np.abs(raw) > 0.01)
    if len(loud) == 0:
        raise VlhError(f"{engine} produced silence for {text[:40]!r} (voice {vid}, rate {rate})")
    spoken = (loud[-1] - loud[0]) / sr
    units = max(1.0, sum(max(1.0, len(w) / 6) for w in text.split()))  # ~words, long words count more
    expected = units * 60.0 / rate
    if not 0.3 * expected - 0.2 <= spoken <= 3.0 * expected + 0.5:
        raise VlhError(f"{engine} output for {text[:40]!r} lasts {spoken:.2f} s, implausible for "
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
