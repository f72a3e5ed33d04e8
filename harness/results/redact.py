"""Keeping secrets out of everything vlh writes: URLs lose credentials and query values."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def redact_url(url: str | None) -> str | None:
    """`https://user:pw@host/p?token=abc&x=1` → `https://host/p?token=REDACTED&x=REDACTED`."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = urlencode([(k, "REDACTED") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


_URL = None


def redact_text(text: str) -> str:
    """Every http(s)/ws(s) URL inside free text (a log, a traceback) passed through `redact_url`."""
    import re

    global _URL
    if _URL is None:
        _URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>)]+")
    return _URL.sub(lambda m: redact_url(m.group(0)) or "", text)
