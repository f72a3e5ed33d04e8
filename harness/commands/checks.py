"""Option checks every command shares, run before anything starts: each failure is one `VlhError` line naming the
option and what to do (exit 2). Also the run verdict → exit code (harness/errors.py has the table)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from harness.errors import EXIT_FAILED, EXIT_OK, VlhError


def positive(value: float | None, flag: str, unit: str = "seconds") -> None:
    """A duration option must be a finite number > 0 (None: not given)."""
    if value is None:
        return
    if not (value > 0 and value != float("inf")):
        raise VlhError(f"{flag} {value:g}: give a number of {unit} > 0")


def out_dir(path: str | Path | None, flag: str = "--out") -> None:
    """A folder vlh will write into: it must be (or become) a writable directory. Creates it."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise VlhError(f"{flag} {p}: is a file, not a folder; give a folder path (it is created if missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VlhError(f"{flag} {p}: cannot create this folder ({exc.strerror or exc}); choose a writable "
                       "path") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise VlhError(f"{flag} {p}: not writable; choose a folder you can write to")
    probe = p / f".vlh-write-test-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise VlhError(f"{flag} {p}: cannot write here ({exc.strerror or exc}); choose a writable path") from None


def credentials(url: str | None, headers: dict) -> None:
    """A URL with user:password@ and an Authorization header both say who you are: HTTP allows one."""
    if not url:
        return
    if urlsplit(url).username is not None and any(k.strip().lower() == "authorization" for k in headers):
        raise VlhError("--agent has credentials in the URL (user:password@) and --header gives Authorization: "
                       "keep one of the two")


def run_exit_code(meta: dict, allow_failures: bool = False) -> tuple[int, str | None]:
    """(exit code, one line saying why not 0) for a finished run's run.json: 1 when a turn was not answered or an
    SLO broke, unless `allow_failures`."""
    s = meta.get("summary") or {}
    counts = s.get("status_counts") or {}
    turns = int(s.get("turns") or 0)
    failed = turns - int(counts.get("ok", 0))
    broken = [v for v in meta.get("slo") or [] if not v.get("passed", True)]
    why = []
    if failed:
        others = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k != "ok")
        why.append(f"{failed} of {turns} turns not answered ({others})")
    if not turns:
        why.append("no turn was measured")
    if broken:
        why.append(f"{len(broken)} SLO(s) broken ({', '.join(str(v.get('name')) for v in broken)})")
    if not why:
        return EXIT_OK, None
    line = "; ".join(why)
    if allow_failures:
        return EXIT_OK, line + " (--allow-failures: exit 0)"
    return EXIT_FAILED, line + " (exit 1; --allow-failures exits 0)"


def status_words(counts: dict) -> str:
    """{'ok': 3, 'no_response': 2} → '3 ok, 2 no_response'."""
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0]))) or "none"
