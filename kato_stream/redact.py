"""Secrets out of what kato-stream prints and logs.

Why: store URLs may carry a password (``redis://:pw@host``, ``http://user:pw@host:8123``)
or a token in their query (``?password=``, ``?api_key=``), and they end up in error messages,
log lines, ``kato-stream dev``'s banner and the gateway's diagnostics.  Everything that
shows a URL shows ``redact_url(url)``.  (The secret settings themselves are left out of
``Settings``' repr and of ``kato-stream settings``: settings.py.)
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "SECRET_QUERY_KEYS", "redact_url"]

MASK = "***"

SECRET_QUERY_KEYS = frozenset(
    {"password", "pass", "pwd", "api_key", "apikey", "api-key", "token", "access_token", "secret"}
)
"""Query parameters whose value :func:`redact_url` masks (compared case-insensitively)."""


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***`` (the user name,
    host, port, path and other parameters stay).  A string that is not a URL is returned
    unchanged."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. a malformed port: show nothing of the user info
        return url.rsplit("@", 1)[-1] if "@" in url else url
    netloc = parts.netloc
    if password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode(
                [(k, MASK if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*",
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))
