"""The one error type users see: a clear sentence, no traceback (the CLI prints it and exits 2)."""


class VlhError(Exception):
    """A problem with the user's input or environment, phrased so they can fix it.

    The message names the file / line / turn / device concerned and what to do.
    """

    exit_code = 2
