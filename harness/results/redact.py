"""Keeping secrets out of everything vlh writes and shows: one marker, `REDACTED`, for every masked value.

- `redact_url`: URLs lose their user:password and every query value (vlh cannot know which ones are tokens).
- `redact_config`: a configuration block keeps its shape; values under secret-looking keys (token, key, secret,
  auth, pass, sig, session, jwt, credential; and any `headers`) and `Bearer …`/`Basic …` strings are masked.
Used when run.json is written, in log lines and error messages, and again when the report shows metadata (defence
in depth: a run folder written by an older vlh or by hand is masked on display too).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"
SECRET_KEYS = re.compile(r"token|key|secret|auth|pass|sig|session|jwt|credential", re.I)


def redact_url(url: str | None) -> str | None:
    """`https://user:pw@host/p?token=abc&x=1` → `https://host/p?token=REDACTED&x=REDACTED`."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<unparseable URL>"
    query = urlencode([(k, REDACTED) for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact_config(obj):
    """A copy of a JSON-like value with secret-looking keys' values, `headers` and auth strings set to REDACTED."""
    if isinstance(obj, dict):
        return {k: (REDACTED if SECRET_KEYS.search(str(k)) or str(k).lower() == "headers" else redact_config(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_config(v) for v in obj]
    if isinstance(obj, str) and obj.lower().startswith(("bearer ", "basic ")):
        return REDACTED
    return obj


_URL = None


def redact_text(text: str) -> str:
    """Every http(s)/ws(s) URL inside free text (a log, a traceback) passed through `redact_url`."""
    import re

    global _URL
    if _URL is None:
        _URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>)]+")
    return _URL.sub(lambda m: redact_url(m.group(0)) or "", text)
