"""An IAM token as fgsync handles it, whatever its source (``FGSYNC_TOKEN``, the OS keyring, a login): whether its
text can go in a header, when it expires, and the TLS setting of the IAM requests made for it.

Apart from :mod:`fgsync.auth.iam` (the password login and its issued token), so that credentials from the
environment never load the login.
"""

from __future__ import annotations

import datetime as _dt
import re
import ssl
from typing import Optional, Union

import httpx

from fgsync.errors import CredentialsError

__all__ = ["format_remaining", "parse_expires", "require_usable_token", "ssl_verify", "token_problem"]

# Compiled on first use (re keeps it): a token from the environment has no expiry to read.
_EXPIRES_RE = r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?$"


def parse_expires(text: str) -> Optional[_dt.datetime]:
    """Parse IAM's ``expires_at`` (``2019-02-13T06:52:13.855000Z``) leniently; None when it cannot be read.

    A time without a zone is taken as UTC (IAM writes UTC).
    """
    match = re.match(_EXPIRES_RE, text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = _dt.timezone.utc
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError:
        return None


def token_problem(token: str) -> Optional[str]:
    """What keeps ``token`` out of an ``X-Auth-Token`` header (``it has a line break at character 65``), or None.

    IAM tokens are one line of printable ASCII. A line break (a token copied from wrapped output), a space, a
    control or a non-ASCII character cannot be right, and httpx refuses some of them with an error that quotes
    the whole header value, which would carry the token into fgsync's messages and logs. The answer never
    quotes the token.
    """
    for index, char in enumerate(token, start=1):
        if "!" <= char <= "~":
            continue
        if char in "\r\n":
            what = "a line break"
        elif char.isspace():
            what = "a space or tab"
        elif char.isascii():
            what = "a control character"
        else:
            what = "a non-ASCII character"
        return f"it has {what} at character {index}"
    return None


def require_usable_token(token: str, origin: str, remedy: str) -> str:
    """``token``, or a CredentialsError (before any request) that says what is wrong with it and what to do.

    Raises:
        CredentialsError: ``{origin} is not a usable token: it has … at character N (…); {remedy}``.
    """
    problem = token_problem(token)
    if problem is not None:
        raise CredentialsError(
            f"{origin} is not a usable token: {problem} (an IAM token is one line of letters, digits and "
            f"symbols); {remedy}"
        )
    return token


def format_remaining(seconds: float) -> str:
    """``5400`` -> ``1 h 30 min``; ``2700`` -> ``45 min``; under a minute -> ``less than a minute``."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def ssl_verify(verify: Union[bool, str, ssl.SSLContext]) -> Union[bool, ssl.SSLContext]:
    """What to pass to httpx as ``verify``: a CA file becomes a context trusting it *and* the default CAs.

    ``verify=False`` is refused: fgsync never turns TLS verification off.
    """
    if verify is False:
        raise ValueError("TLS verification is never turned off")
    if isinstance(verify, str):
        context = httpx.create_ssl_context()
        context.load_verify_locations(cafile=verify)
        return context
    if isinstance(verify, ssl.SSLContext):
        return verify
    return True
