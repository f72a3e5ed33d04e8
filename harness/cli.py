"""`vlh` command line. Each subcommand lives in `harness.commands.<name>`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from harness.commands import COMMANDS
from harness.errors import EXIT_INTERRUPTED, EXIT_USAGE, VlhError, exit_codes_epilog
from harness.versions import VersionAction


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlh",
        description="vlh, the voice-latency harness: measures the time to first audio at the user's ear "
        "and attributes it stage by stage (endpointing, STT, LLM, TTS, transport, jitter buffer).",
        epilog=exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
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
        return EXIT_INTERRUPTED
    except Exception as exc:  # a vlh bug: one line for the user, the traceback in a log file
        log = crash_log(exc)
        print(f"vlh: error: vlh failed unexpectedly ({type(exc).__name__}: {str(exc)[:200]}); the traceback is in "
              f"{log} — please report it", file=sys.stderr)
        return EXIT_USAGE


def crash_log(exc: BaseException) -> str:
    """Write the traceback of `exc` to a fresh file (in $VLH_LOG_DIR, else the temp folder); return its path."""
    import os
    import tempfile
    import traceback

    from harness.results.redact import redact_text

    folder = os.environ.get("VLH_LOG_DIR") or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="vlh-crash-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(redact_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
