"""One module per `vlh` subcommand. Each exposes `register(subparsers)` which adds its parser
and sets `func` (called with the parsed args, returns an exit code)."""

COMMANDS = ["analyze", "agent", "run", "load", "report", "loopback", "suite", "scenarios", "demo", "doctor", "export"]
