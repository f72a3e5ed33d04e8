"""`vlh demo`: measure the built-in reference agent over WebRTC (5 turns, the `typical` profile) and write the run
folder with its report — what `make demo` runs. `vlh demo --offline`: no call; synthesise a short two-speaker
conversation with espeak-ng, analyse it like `vlh analyze` would, and print the turn table beside the truth."""

from __future__ import annotations

import argparse

from harness.audio import SAMPLE_RATE
from harness.audio.synth import build_conversation
from harness.audio.turns import find_turns

EXCHANGES = [
    ("Hi, I would like to book a table for tonight", "Sure, for how many people"),
    ("Four people, around eight", "Eight works, can I have a name"),
    ("Yes, it is Morgan", None),
    ("Hello, are you still there", "Yes, sorry, you are booked for eight"),
]
GAPS = [0.42, 0.95, 0.0, 1.6]


def register(sub) -> None:
    p = sub.add_parser("demo", help="measure the reference agent (5 turns over WebRTC) and write its report; "
                       "--offline: analyse a synthesised conversation instead", description=__doc__)
    p.add_argument("--turns", type=int, default=5, metavar="N", help="turns to measure [5]")
    p.add_argument("--out", metavar="DIR", help="run folder [reports/<timestamp>/]")
    p.add_argument("--offline", action="store_true", help="no call: synthesise a two-voice conversation, analyse "
                   "it and print the turn table beside the truth")
    p.add_argument("--noise-db", type=float, default=40.0, help="--offline: white noise this many dB under the "
                   "speech peak [40]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.offline:
        return measure_reference_agent(args.turns, args.out)
    return offline(args)


def measure_reference_agent(turns: int, out: str | None) -> int:
    """`vlh run --turns N [--out DIR]`: the reference agent, measured and reported."""
    from harness.commands import run as run_command

    parser = argparse.ArgumentParser(prog="vlh")
    run_command.register(parser.add_subparsers())
    return run_command.main(parser.parse_args(["run", "--turns", str(turns)] + (["--out", out] if out else [])))


def offline(args: argparse.Namespace) -> int:
    print("vlh demo: synthesising a two-voice conversation with espeak-ng (user gmw/en-us, agent gmw/en-gb-x-rp)")
    x, truth = build_conversation(EXCHANGES, gaps_s=GAPS, noise_db=args.noise_db, comfort_noise_db=45.0, seed=7)
    sr = SAMPLE_RATE
    print(f"recording: {len(x) / sr:.1f} s stereo 48 kHz (ch0 user, ch1 agent), white noise {args.noise_db:g} dB "
          "under the speech peak, 80 ms of comfort noise before each reply\n")
    turns = find_turns(x[:, 0], x[:, 1], sr)
    print(f"{'turn':>4}  {'user_speech_end_s':>17}  {'agent_audio_start_s':>19}  {'gap_ms':>8}  "
          f"{'true gap_ms':>11}  status")
    for t, tr in zip(turns, truth):
        d = t.to_dict()
        a = "-" if d["agent_audio_start_s"] is None else f"{d['agent_audio_start_s']:.4f}"
        g = "-" if d["gap_ms"] is None else f"{d['gap_ms']:.1f}"
        tg = "-" if tr["agent_start"] is None else f"{(tr['agent_start'] - tr['user_end']) / sr * 1e3:.1f}"
        print(f"{t.index:>4}  {d['user_speech_end_s']:>17.4f}  {a:>19}  {g:>8}  {tg:>11}  {d['status']}")
    if len(turns) != len(truth):
        print(f"\nvlh demo: found {len(turns)} turns, {len(truth)} were placed")
        return 1
    return 0
