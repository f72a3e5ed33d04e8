"""The errors users see (a clear sentence, no traceback) and vlh's exit codes — the one table.

| code | meaning                                                                                      |
|------|----------------------------------------------------------------------------------------------|
| 0    | every turn answered and every SLO met (`vlh suite`: all green)                                |
| 1    | the run completed but turns failed or an SLO broke (`vlh suite`: a breach or a regression);    |
|      | `--allow-failures` exits 0 instead                                                            |
| 2    | bad usage or input (one line: what, and what to do), or a vlh crash (the line names the log)  |
| 3    | the agent could not be reached at all (no call came up)                                      |
| 130  | interrupted (Ctrl-C); finished turns are kept                                                 |
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "every turn answered and every SLO met",
    EXIT_FAILED: "the run completed but turns failed or an SLO broke (--allow-failures: exit 0)",
    EXIT_USAGE: "bad usage or input, or a vlh crash (the message names the log with the traceback)",
    EXIT_UNREACHABLE: "the agent could not be reached at all",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); finished turns are kept",
}


def exit_codes_epilog() -> str:
    """The exit-code table as `--help` epilog text."""
    return "exit codes:\n" + "\n".join(f"  {k:<4} {v}" for k, v in EXIT_CODES.items())


class VlhError(Exception):
    """A problem with the user's input or environment, phrased so they can fix it.

    The message names the file / line / turn / device concerned and what to do.
    """

    exit_code = EXIT_USAGE


class AgentUnreachable(VlhError):
    """No call to the agent came up (refused, timed out, no WebRTC connection, HTTP 5xx): exit 3."""

    exit_code = EXIT_UNREACHABLE
