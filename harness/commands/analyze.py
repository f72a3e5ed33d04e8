"""`vlh analyze`: end of user speech, first agent audio after it, and the gap, found in a recording.

    vlh analyze REC.wav [--json] [--mic-channel 0] [--ear-channel 1]
    vlh analyze --mic user.wav --ear agent.wav [--json]

The file is read piece by piece and analysed block by block (harness/audio/blocks.py): memory does not grow with
the recording, and the turns are those of whole-file analysis.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from harness.audio.blocks import block_speech_regions, resampled_reader
from harness.audio.boundaries import VAD_RATE
from harness.audio.turns import Turn, pair_turns
from harness.audio.wavio import WavInfo, read_frames, wav_info
from harness.errors import VlhError

CLIP_LEVEL = 0.999  # |sample| at or above this is full scale
CLIP_RUN = 3  # this many full-scale samples in a row is clipping, not a loud peak


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="find end of user speech, first agent audio and the gap in a recording",
        description="Finds, in a stereo recording (ch0 user, ch1 agent) or two mono files, each end of user "
        "speech, the first agent audio after it and the gap between them. Times are seconds from the start "
        "of the file, boundaries refined to the sample (see docs/analyze.md).",
    )
    p.add_argument("recording", nargs="?", type=Path, help="stereo WAV: one channel user (mic), one agent (ear)")
    p.add_argument("--mic", type=Path, help="mono WAV of the user side (with --ear, instead of RECORDING)")
    p.add_argument("--ear", type=Path, help="mono WAV of the agent side (with --mic)")
    p.add_argument("--mic-channel", type=int, default=0, help="channel of RECORDING holding the user (default 0)")
    p.add_argument("--ear-channel", type=int, default=1, help="channel of RECORDING holding the agent (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-o", "--out", type=Path, help="also write the JSON to this file")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--vad-mode", type=int, default=2, choices=range(4), help="webrtcvad aggressiveness (default 2)")
    p.add_argument("--min-pause-ms", type=float, default=300.0,
                   help="pauses shorter than this stay inside one utterance (default 300)")
    p.add_argument("--min-speech-ms", type=float, default=80.0, help="shorter speech is ignored (default 80)")
    p.add_argument("--allow-clipping", action="store_true", help="analyse a clipped recording anyway")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.min_pause_ms < 0 or args.min_speech_ms < 0:
        raise VlhError("--min-pause-ms and --min-speech-ms must not be negative")
    mic, ear, n, sr, names = load_inputs(args)
    peak_ear = 0.0
    for read, name in ((mic, names[0]), (ear, names[1])):
        peak = check_clipping(read, n, sr, name, allow=args.allow_clipping)
        peak_ear = peak if read is ear else peak_ear
    opts = dict(vad_mode=args.vad_mode, min_pause_ms=args.min_pause_ms, min_speech_ms=args.min_speech_ms)
    # block by block (harness/audio/blocks.py): memory does not grow with the recording
    user = block_speech_regions(mic, n, sr, **opts)
    turns = pair_turns(user, block_speech_regions(ear, n, sr, **opts), sr, n)
    if not turns:
        raise VlhError(f"{names[0]}: no user speech found (all silence or noise); check the channel "
                       "(--mic-channel) or the file")
    if peak_ear <= 1e-4:
        print(f"vlh: warning: {names[1]} is silent; every turn is no_response", file=sys.stderr)
    doc = {"sample_rate": sr, "turns": [t.to_dict() for t in turns]}
    if args.out is not None:
        if args.out.exists() and not args.force:
            raise VlhError(f"{args.out}: already exists; use --force to overwrite it")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    if args.json:
        print(json.dumps(doc))
    else:
        print(format_table(turns))
    return 0


def _reader(info: WavInfo, ch: int):
    """(first, end) → float32 samples of channel `ch`, zeros past the file's end; reads only those bytes."""
    def read(a: int, b: int) -> np.ndarray:
        x = np.ascontiguousarray(read_frames(info, a, b)[:, ch])
        return x if len(x) == b - a else np.pad(x, (0, b - a - len(x)))
    return read


def load_inputs(args):
    """(mic reader, ear reader, samples, sample_rate, (mic name, ear name)) from RECORDING or --mic/--ear,
    checked. A reader maps (first, end) sample to that piece of the channel (harness/audio/blocks.py)."""
    if args.recording is not None and (args.mic is not None or args.ear is not None):
        raise VlhError("give either RECORDING or --mic and --ear, not both")
    if args.recording is None:
        if args.mic is None or args.ear is None:
            raise VlhError("give a stereo RECORDING, or both --mic USER.wav and --ear AGENT.wav")
        mic, ear = _mono(args.mic, "--mic"), _mono(args.ear, "--ear")
        sr = _rate_ok(mic.sample_rate, args.mic)
        names = (f"{args.mic}", f"{args.ear}")
        if ear.sample_rate != sr:  # to the mic's rate, piece by piece as the blocks ask for them
            read_ear, n_ear = resampled_reader(_reader(ear, 0), ear.frames, ear.sample_rate, sr)
            return _reader(mic, 0), read_ear, max(mic.frames, n_ear), sr, names
        return _reader(mic, 0), _reader(ear, 0), max(mic.frames, ear.frames), sr, names
    path = args.recording
    info = wav_info(path)
    if info.channels == 1:
        raise VlhError(f"{path}: mono file; vlh analyze needs stereo (ch0 user, ch1 agent), "
                       "or two mono files with --mic USER.wav --ear AGENT.wav")
    nch = info.channels
    for flag, ch in (("--mic-channel", args.mic_channel), ("--ear-channel", args.ear_channel)):
        if not 0 <= ch < nch:
            raise VlhError(f"{path}: {flag} {ch} does not exist (the file has channels 0..{nch - 1})")
    if args.mic_channel == args.ear_channel:
        raise VlhError(f"{path}: --mic-channel and --ear-channel are both {args.mic_channel}")
    sr = _rate_ok(info.sample_rate, path)
    return (_reader(info, args.mic_channel), _reader(info, args.ear_channel), info.frames, sr,
            (f"{path} channel {args.mic_channel} (mic)", f"{path} channel {args.ear_channel} (ear)"))


def _mono(path: Path, flag: str) -> WavInfo:
    info = wav_info(path)
    if info.channels != 1:
        raise VlhError(f"{path}: {flag} needs a mono file, this one has {info.channels} channels; "
                       "for a stereo recording use: vlh analyze REC.wav --mic-channel N --ear-channel M")
    return info


def _rate_ok(sr: int, path) -> int:
    if sr < VAD_RATE:
        raise VlhError(f"{path}: sample rate {sr} Hz is too low; speech analysis needs at least {VAD_RATE} Hz")
    return sr


def check_clipping(read, n: int, sr: int, name: str, allow: bool = False, chunk_s: float = 10.0) -> float:
    """VlhError if the channel has runs of CLIP_RUN or more full-scale samples (the recording level was too high),
    unless `allow`; read piece by piece. Returns the channel's peak |sample|."""
    step, total, first, peak = max(1, int(chunk_s * sr)), 0, None, 0.0
    for a in range(0, n, step):
        lo = max(0, a - (CLIP_RUN - 1))  # a run across the piece's start
        x = read(lo, min(n, a + step))
        if len(x):
            peak = max(peak, float(np.max(np.abs(x))))
        full = np.abs(x) >= CLIP_LEVEL
        total += int(full[a - lo:].sum())
        if first is None and full.any() and len(full) >= CLIP_RUN:
            run = full[: len(full) - CLIP_RUN + 1].copy()
            for k in range(1, CLIP_RUN):
                run &= full[k : len(full) - CLIP_RUN + 1 + k]
            hits = np.flatnonzero(run)
            first = lo + int(hits[0]) if len(hits) else None
    if first is not None and not allow:
        raise VlhError(f"{name}: clipped ({total} samples at full scale, first at "
                       f"{first / sr:.3f} s); record at a lower level, or pass --allow-clipping")
    return peak


def format_table(turns: list[Turn]) -> str:
    head = f"{'turn':>4}  {'user_speech_end_s':>17}  {'agent_audio_start_s':>19}  {'gap_ms':>8}  status"
    lines = [head]
    for t in turns:
        d = t.to_dict()
        a = "-" if d["agent_audio_start_s"] is None else f"{d['agent_audio_start_s']:.4f}"
        g = "-" if d["gap_ms"] is None else f"{d['gap_ms']:.1f}"
        lines.append(f"{t.index:>4}  {d['user_speech_end_s']:>17.4f}  {a:>19}  {g:>8}  {d['status']}")
    ok = [t.gap_ms for t in turns if t.gap_ms is not None]
    if ok:
        lines.append(f"{len(turns)} turns, {len(ok)} answered; gap median {np.median(ok):.1f} ms, "
                     f"min {min(ok):.1f}, max {max(ok):.1f}")
    else:
        lines.append(f"{len(turns)} turns, none answered")
    return "\n".join(lines)
