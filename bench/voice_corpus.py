"""An evaluation corpus of voices vlh was not tuned on: stereo conversations with every boundary known to the sample.

Voices (Debian packages, see scripts/setup.sh): flite (kal, awb, rms, slt), festival (kal and ked diphones, the
slt HTS voice), espeak-ng variants (en-scotland, en-us+f3, en-gb) and the human recordings alsa-utils ships in
/usr/share/sounds/alsa (Noise.wav excluded). Each source utterance is cut at sample positions taken from the
source signal alone (never from vlh's detector) and given 2 ms raised-cosine fades, so its first and last sample
are its true boundaries:

- `voiced` cut (`harness.audio.synth.sharpen`): first/last sample where the 80–4000 Hz envelope is within 20 dB of
  its peak (inside a vowel);
- `natural` cut: first/last sample where the full-band 5 ms envelope is within `NATURAL_DB` (30 dB) of its peak —
  the utterance's own onset and its trailing fricative or plosive release ("Thanks." ends in its /s/ hiss).

A conversation: `n` exchanges, user on channel 0, agent on channel 1; replies 60 ms–3 s (log-uniform) after the
user's end; the next utterance 0.3–2 s after the reply. Each channel has one speech level (peak −3…−30 dBFS,
drawn per conversation) with ±3 dB per utterance; `comfort_db` of white comfort noise (100 ms, that far under the
reply's peak) before each reply. Noise (`white`, `pink`, `babble`) on both channels at `snr_db` under the
channel's speech RMS (the RMS over the speech samples, full band). Babble is 6 overlapping talkers of the corpus's
own voices. Everything is seeded; synthesis is cached under `recordings/cache/voices/`.

    .venv/bin/python bench/voice_corpus.py --family flite --noise pink --snr 25 --seed 1 --out /tmp/c.wav
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.audio.noise import colored  # noqa: E402
from harness.audio.resample import resample  # noqa: E402
from harness.audio.synth import sharpen  # noqa: E402
from harness.audio.wavio import read_wav  # noqa: E402

SR = 48000
ALSA_DIR = Path("/usr/share/sounds/alsa")
CACHE = Path(__file__).resolve().parents[1] / "recordings" / "cache" / "voices"
NATURAL_DB = -30.0
FADE_MS = 2.0

FAMILIES = {
    "flite": [("flite", v) for v in ("kal", "awb", "rms", "slt")],
    "festival": [("festival", v) for v in ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")],
    "espeak": [("espeak", v) for v in ("en-scotland", "en-us+f3", "en-gb")],
    "human": [("human", p.stem) for p in sorted(ALSA_DIR.glob("*.wav")) if p.stem != "Noise"],
}
USER_TEXTS = ["No.", "Thanks.", "I would like to book a table for two.", "Yes.", "What time does it start?",
              "Is it still open?", "Can you check the price list?", "Okay.", "That sounds fine, thanks.", "Stop."]
AGENT_TEXTS = ["Sure, for what day?", "Of course.", "The kitchen closes at ten tonight.", "Yes.", "Thanks.",
               "It starts at six, shall I book it?", "I can check that for you.", "No.",
               "There is a car park behind the building.", "Let me see."]


class VoiceUnavailable(RuntimeError):
    """The engine or voice is not installed (the message names the Debian package)."""


# ---------------------------------------------------------------------------------------------------- synthesis

def _run(cmd: list[str], out: Path) -> np.ndarray:
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    if r.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
        raise VoiceUnavailable(f"{' '.join(cmd[:3])}: failed ({r.stderr.decode(errors='replace').strip()[:200]})")
    a, sr = read_wav(out)
    if a.ndim == 2:
        a = a.mean(axis=1)
    return resample(np.asarray(a, np.float32), sr, SR)


def _synth_uncached(engine: str, voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="vlh-voice-") as tmp:
        out = Path(tmp) / "u.wav"
        if engine == "flite":
            if not shutil.which("flite"):
                raise VoiceUnavailable("flite is not installed (apt-get install flite)")
            return _run(["flite", "-voice", voice, "-t", text, "-o", str(out)], out)
        if engine == "festival":
            if not shutil.which("text2wave"):
                raise VoiceUnavailable("festival is not installed (apt-get install festival festvox-kallpc16k "
                                       "festvox-kdlpc16k festvox-us-slt-hts)")
            txt = Path(tmp) / "u.txt"
            txt.write_text(text + "\n")
            return _run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(out), str(txt)], out)
        if engine == "espeak":
            return _run(["espeak-ng", "-v", voice, "-w", str(out), text], out)
        if engine == "human":
            p = ALSA_DIR / f"{voice}.wav"
            if not p.exists():
                raise VoiceUnavailable(f"{p} missing (apt-get install alsa-utils)")
            a, sr = read_wav(p)
            return resample(np.asarray(a if a.ndim == 1 else a.mean(axis=1), np.float32), sr, SR)
    raise ValueError(f"unknown engine {engine!r}")


def synth(engine: str, voice: str, text: str) -> np.ndarray:
    """The source utterance at 48 kHz float32, cached on disk (human recordings ignore `text`)."""
    key = hashlib.sha256(f"1|{engine}|{voice}|{text if engine != 'human' else ''}".encode()).hexdigest()[:24]
    f = CACHE / f"{key}.npy"
    if f.exists():
        return np.load(f)
    a = _synth_uncached(engine, voice, text)
    if not np.any(np.abs(a) > 1e-3):
        raise VoiceUnavailable(f"{engine}/{voice} produced silence for {text!r}")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".{os.getpid()}.tmp.npy")  # one per process: two benches may synthesise it at once
    np.save(tmp, a.astype(np.float32))
    tmp.replace(f)
    return a.astype(np.float32)


# ---------------------------------------------------------------------------------------------------- truth cuts

def _fade(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    nf = min(int(round(SR * FADE_MS / 1000)), len(a) // 2)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(nf) + 0.5) / nf)).astype(np.float32)
    a[:nf] *= ramp
    a[len(a) - nf:] *= ramp[::-1]
    return a


def cut(a: np.ndarray, kind: str) -> np.ndarray:
    """The utterance cut at its true boundaries (see module doc), faded; its first and last sample are speech."""
    if kind == "voiced":
        out, _ = sharpen(a, SR, fade_ms=FADE_MS, threshold_db=-20.0)
        return out
    if kind != "natural":
        raise ValueError(kind)
    a = a - float(np.mean(a))
    w = int(SR * 0.005)
    c = np.concatenate([[0.0], np.cumsum(np.square(a, dtype=np.float64))])
    env = np.sqrt(np.maximum(c[w:] - c[:-w], 0) / w)  # env[j]: samples j … j+w
    above = np.flatnonzero(env >= env.max() * 10 ** (NATURAL_DB / 20))
    s, e = int(above[0]), int(above[-1]) + w
    # the cut sample itself must stand out: move inward to the first/last sample above the threshold's level
    lvl = env.max() * 10 ** (NATURAL_DB / 20)
    big = s + np.flatnonzero(np.abs(a[s:e]) >= lvl)
    return _fade(a[int(big[0]) : int(big[-1]) + 1].astype(np.float32))


def pieces(a: np.ndarray, gap_s: float = 0.15, quiet_db: float = -40.0) -> list[np.ndarray]:
    """The parts of a recording separated by at least `gap_s` of sound `quiet_db` under its loudest 10 ms."""
    w = int(SR * 0.01)
    n = len(a) // w
    r = np.sqrt(np.mean(np.square(a[: n * w].reshape(n, w), dtype=np.float64), axis=1))
    on = np.flatnonzero(r >= r.max() * 10 ** (quiet_db / 20))
    cuts = np.flatnonzero(np.diff(on) > gap_s / 0.01)
    starts = np.concatenate([[on[0]], on[cuts + 1]])
    ends = np.concatenate([on[cuts], [on[-1]]]) + 1
    return [a[max(0, s - 2) * w : min(n, e + 2) * w] for s, e in zip(starts, ends)]


# ---------------------------------------------------------------------------------------------------- conversations

@dataclass(frozen=True)
class Span:
    start: int
    end: int


@dataclass
class Conversation:
    audio: np.ndarray  # (n, 2) float32: user, agent
    user: list[tuple[int, int]]  # true [start, end) of each utterance
    agent: list[tuple[int, int]]  # true [start, end) of each reply
    info: dict = field(default_factory=dict)


@lru_cache(maxsize=4)
def _babble_bed(seed: int, n: int) -> np.ndarray:
    """Six talkers of the corpus's own voices (espeak and flite), each a run of utterances, summed; unit RMS."""
    rng = np.random.default_rng(10_000 + seed)
    pool = FAMILIES["flite"] + FAMILIES["espeak"]
    texts = USER_TEXTS + AGENT_TEXTS
    bed = np.zeros(n, np.float64)
    for _ in range(6):
        eng, v = pool[rng.integers(len(pool))]
        parts, total = [], 0
        while total < n:
            u = synth(eng, v, texts[rng.integers(len(texts))])
            u = u / (np.sqrt(np.mean(u ** 2)) + 1e-12)
            parts.append(u)
            total += len(u)
        talker = np.concatenate(parts)
        off = int(rng.integers(len(talker) - n + 1)) if len(talker) > n else 0
        bed += talker[off : off + n]
    return (bed / np.sqrt(np.mean(bed ** 2))).astype(np.float32)


def noise(kind: str, n: int, seed: int) -> np.ndarray:
    """n samples of unit-RMS white, pink or babble noise."""
    if kind == "babble":
        return _babble_bed(seed, n).copy()
    if kind == "pink":  # colored() is a fixed 48 kHz 1/f shaper
        return colored("pink", n, seed)
    return colored("white", n, seed)


def conversation(family: str, seed: int, *, noise_kind: str | None = None, snr_db: float | None = None,
                 n: int = 6, agent_voice: int | None = None, comfort_db: float | None = 50.0) -> Conversation:
    """One seeded conversation of `family` (see module doc). `agent_voice` picks the agent's voice in the family
    (default: seed modulo the number of voices); the user speaks the next voice of the family."""
    rng = np.random.default_rng(seed)
    voices = FAMILIES[family]
    if not voices:
        raise VoiceUnavailable(f"no {family} voices installed")
    av = seed % len(voices) if agent_voice is None else agent_voice
    uv = (av + 1) % len(voices)
    level = {0: rng.uniform(-30, -3), 1: rng.uniform(-30, -3)}
    sides: list[tuple[np.ndarray, np.ndarray, float]] = []
    cuts: list[list[str]] = [[], []]  # each utterance's cut, per channel
    ut = rng.permutation(len(USER_TEXTS))
    at = rng.permutation(len(AGENT_TEXTS))
    for i in range(n):
        pair = []
        for ch, (texts, order, v) in enumerate(((USER_TEXTS, ut, uv), (AGENT_TEXTS, at, av))):
            if family == "human":  # the recordings are the texts: any of them, either side
                v = int(rng.integers(len(voices)))
            eng, name = voices[v]
            src = synth(eng, name, texts[order[i % len(order)]])
            if family == "human":  # "Front ... Center": each word is an utterance (vlh splits at 300 ms pauses)
                words = pieces(src)
                src = words[int(rng.integers(len(words)))]
            kind = "natural" if rng.random() < 0.5 else "voiced"
            cuts[ch].append(kind)
            a = cut(src, kind)
            pk = min(-1.0, level[ch] + rng.uniform(-3, 3))
            pair.append((a * (10 ** (pk / 20) / np.abs(a).max())).astype(np.float32))
        gap = float(np.exp(rng.uniform(np.log(0.06), np.log(3.0))))
        sides.append((pair[0], pair[1], gap))
    lead = int(0.8 * SR)
    t = lead
    user, agent = [], []
    for u, a, gap in sides:
        user.append((t, t + len(u)))
        s = t + len(u) + int(round(gap * SR))
        agent.append((s, s + len(a)))
        t = s + len(a) + int(rng.uniform(0.3, 2.0) * SR)
    x = np.zeros((t + lead, 2), np.float32)
    cn = int(0.1 * SR)
    for (u, a, _), (us, ue), (as_, ae) in zip(sides, user, agent):
        x[us:ue, 0] += u
        x[as_:ae, 1] += a
        if comfort_db is not None:
            x[as_ - cn : as_, 1] += rng.standard_normal(cn).astype(np.float32) * np.abs(a).max() * 10 ** (-comfort_db / 20)
    info = {"family": family, "agent_voice": voices[av][1], "user_voice": voices[uv][1], "noise": noise_kind,
            "snr_db": snr_db, "seed": seed, "levels_dbfs": [round(level[0], 1), round(level[1], 1)],
            "cuts": cuts}
    if noise_kind is not None:
        for ch, regs in ((0, user), (1, agent)):
            sp = np.concatenate([x[a:b, ch] for a, b in regs]).astype(np.float64)
            rms = float(np.sqrt(np.mean(sp ** 2)))
            x[:, ch] += noise(noise_kind, len(x), seed * 2 + ch) * np.float32(rms * 10 ** (-snr_db / 20))
    return Conversation(x, user, agent, info)


def main() -> int:
    from harness.audio.wavio import write_wav

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="flite")
    ap.add_argument("--noise", choices=["white", "pink", "babble"])
    ap.add_argument("--snr", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    c = conversation(args.family, args.seed, noise_kind=args.noise, snr_db=args.snr if args.noise else None)
    write_wav(args.out, c.audio, SR)
    for i, ((us, ue), (as_, ae)) in enumerate(zip(c.user, c.agent), 1):
        print(f"turn {i}: user {us / SR:.4f}–{ue / SR:.4f} s, agent {as_ / SR:.4f}–{ae / SR:.4f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------------------------------------------- scoring

def match(truth: list[tuple[int, int]], found: list, join: bool = False) -> dict:
    """Compare detected regions (objects with .start/.end) with the true intervals of one channel.

    missed: true intervals no region overlaps; merged: regions overlapping two or more true intervals; split: true
    intervals overlapped by two or more regions; extra: regions overlapping none. `pairs`: (true index, region)
    for the one-to-one matches (the only ones whose edges are scored)."""
    over = [[j for j, (a, b) in enumerate(truth) if r.start < b and r.end > a] for r in found]
    by_truth: dict[int, list[int]] = {}
    for k, js in enumerate(over):
        for j in js:
            by_truth.setdefault(j, []).append(k)
    if join:  # a reply's parts are one reply to a turn (agent_start: the first's start, agent_end: the last's end)
        pairs = [(j, Span(found[ks[0]].start, found[ks[-1]].end)) for j, ks in sorted(by_truth.items())
                 if all(len(over[k]) == 1 for k in ks)]
    else:
        pairs = [(j, found[ks[0]]) for j, ks in sorted(by_truth.items()) if len(ks) == 1 and len(over[ks[0]]) == 1]
    return {"missed": sum(1 for j in range(len(truth)) if j not in by_truth),
            "merged": sum(1 for js in over if len(js) > 1),
            "split": sum(1 for ks in by_truth.values() if len(ks) > 1),
            "extra": sum(1 for js in over if not js), "pairs": pairs}


def score(conv: Conversation, user_regions: list, agent_regions: list) -> dict:
    """Per-conversation score: edge errors (ms, detected − true) of the one-to-one matches (user side: the turns'
    utterances, `pair_turns`; `utterance_parts`: utterances the detector found in several regions) and the cut
    of the utterance each edge belongs to (`errors_cut`: "voiced" or "natural", see `cut`), `key` errors
    (user end, agent start: what ttfa is made of), and turns found: exchanges whose utterance and reply are both
    matched one to one with no extra region in between (so pairing turns gives the right reply)."""
    from harness.audio.turns import pair_turns

    turns = pair_turns(list(user_regions), list(agent_regions), SR)
    # the user side is scored on the turns' utterances (regions joined where the agent did not answer)
    utts = [Span(t.user_start, t.user_end) for t in turns]
    mu, ma = match(conv.user, utts), match(conv.agent, agent_regions, join=True)
    parts = match(conv.user, user_regions)["split"]
    errs, key, cut_of = [], [], []
    pu, pa = dict(mu["pairs"]), dict(ma["pairs"])
    cuts = conv.info.get("cuts", [[], []])
    for ch, (pairs, truth) in enumerate(((pu, conv.user), (pa, conv.agent))):
        for j, r in pairs.items():
            errs += [r.start - truth[j][0], r.end - truth[j][1]]
            cut_of += [cuts[ch][j] if j < len(cuts[ch]) else "?"] * 2
    reply_of = {t.user_start: t.agent_start for t in turns}
    reply_end = {t.user_start: t.agent_end for t in turns}
    found = 0
    for j in range(len(conv.user)):
        if j in pu and j in pa:
            key += [pu[j].end - conv.user[j][1], pa[j].start - conv.agent[j][0]]
            found += reply_of.get(pu[j].start) == pa[j].start and reply_end.get(pu[j].start) == pa[j].end
    ms = 1e3 / SR
    return {"turns": len(conv.user), "found": found,
            "missed": mu["missed"] + ma["missed"], "merged": mu["merged"] + ma["merged"],
            "split": mu["split"], "utterance_parts": parts, "reply_parts": ma["split"], "extra": mu["extra"] + ma["extra"],
            "errors_ms": np.array(errs, float) * ms, "errors_cut": np.array(cut_of, dtype=object),
            "key_ms": np.array(key, float) * ms}


def failing_edges(family: str, kind: str, snr: float, seeds: int, limit_ms: float = 5.0):
    """Every detected edge more than `limit_ms` off, in `seeds` × voices conversations of `family` with `kind`
    noise at `snr`: (seed, channel, turn j, start?, detected, true, error ms, noisy channel, noise alone) — speech
    and noise taken apart (the corpus adds the noise last), for bench/edge_evidence.py and tail_audibility.py."""
    from harness.audio.boundaries import speech_regions

    for seed in range(seeds * len(FAMILIES[family])):
        c = conversation(family, seed, noise_kind=kind, snr_db=snr)
        clean = conversation(family, seed).audio
        for ch, truth in ((0, c.user), (1, c.agent)):
            regs = speech_regions(c.audio[:, ch], SR)
            noise = c.audio[:, ch] - clean[:, ch]
            for j, r in match(truth, regs, join=ch == 1)["pairs"]:
                for start, det, tru in ((True, r.start, truth[j][0]), (False, r.end, truth[j][1])):
                    err = (det - tru) / SR * 1e3
                    if abs(err) > limit_ms:
                        yield seed, ch, j, start, det, tru, err, c.audio[:, ch], noise
