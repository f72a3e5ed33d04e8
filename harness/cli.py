"""`vlh` command line. Each subcommand lives in `harness.commands.<name>`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from harness.commands import COMMANDS
from harness.errors import VlhError
from harness.versions import VersionAction


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlh",
        description="vlh, the voice-latency harness: measures the time to first audio at the user's ear "
        "and attributes it stage by stage (endpointing, STT, LLM, TTS, transport, jitter buffer).",
    )
    parser.add_argument("--version", action=VersionAction,
                        help="show vlh's version and those of aiortc, aioice, av, webrtcvad, numpy, and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"harness.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"harness.commands.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VlhError as exc:
        print(f"vlh: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vlh: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
