"""Keeping credentials inside URLs (`http://user:password@host`) out of every text we write.

A Flowable URL or a handler URL may carry Basic credentials in its userinfo part, and such a URL
ends up in error messages (every failed request names its URL), log lines, start-up logs and
configuration errors. A log line is readable by far more people than the Secret it came from, so
every place that puts a URL into text runs it through `redact`, and the log formatters run whole
lines through it again as a safety net for texts that embed a URL we did not format ourselves
(an exception message from httpx, a traceback).

`strip_credentials` is for the other direction: a URL handed on to a child process keeps working
as an address but no longer authenticates.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# scheme://userinfo@ : the userinfo runs to the last "@" before the path, query, fragment,
# whitespace or a quote, as a URL parser splits it (an unencoded "@" in a password included).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>]*)@")


def redact(text: str) -> str:
    """`text` with the `user:password` part of every URL in it replaced by `***`."""
    if "@" not in text:  # the common case, and cheap: log lines pass through here
        return text
    return _USERINFO.sub(lambda match: f"{match['scheme']}{REDACTED}@", text)


def strip_credentials(url: str) -> str:
    """`url` without its userinfo (`http://u:p@host/x` -> `http://host/x`); unparsable: redacted."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))
