"""IAM's temporary credentials: ``POST /v3.0/OS-CREDENTIAL/securitytokens`` with the token method.

The caller's IAM token comes in ``X-Auth-Token`` (or, as IAM also takes it, ``auth.identity.token.id``); the
answer is 201 ``{"credential": {"access", "secret", "securitytoken", "expires_at"}}``, keys the emulated OBS
accepts until ``expires_at`` (``duration_seconds`` 900 to 86,400, default 900). Errors are IAM's
``{"error": {"code", "message", "title"}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fgsync.emulator.api_functions import _iam_time
from fgsync.emulator.wsgi import Answer, header, iam_error, json_answer

if TYPE_CHECKING:
    from fgsync.emulator.app import Emulator

MIN_DURATION = 900
MAX_DURATION = 86_400


def securitytokens(emu: Emulator, environ: Mapping[str, Any], body: bytes) -> Answer:
    """Issue temporary AK/SK and a security token for a valid token (201), or IAM's 400 / 401."""
    try:
        request = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        request = None
    identity = request.get("auth", {}).get("identity") if isinstance(request, dict) else None
    if not isinstance(identity, dict):
        raise iam_error(400, 'The request body must be {"auth": {"identity": {...}}}.')
    methods = identity.get("methods")
    if not isinstance(methods, list) or "token" not in methods:
        raise iam_error(400, "Only the token method is supported here: auth.identity.methods must be ['token'].")
    options = identity.get("token") or {}
    if not isinstance(options, dict):
        raise iam_error(400, "auth.identity.token must be an object.")
    duration = options.get("duration_seconds", MIN_DURATION)
    if isinstance(duration, bool) or not isinstance(duration, int) or not MIN_DURATION <= duration <= MAX_DURATION:
        raise iam_error(400, f"duration_seconds must be an integer from {MIN_DURATION} to {MAX_DURATION}.")
    token = header(environ, "X-Auth-Token") or options.get("id")
    token = token.strip() if isinstance(token, str) else ""
    if not token:
        raise iam_error(401, "The request you have made requires authentication: no X-Auth-Token.")
    problem = emu.tokens.check(token)
    if problem is not None:
        raise iam_error(401, f"The token is not valid: {problem}.")
    access, secret, security_token, expires = emu.obs_keys.issue(duration)
    credential = {"access": access, "secret": secret, "securitytoken": security_token, "expires_at": _iam_time(expires)}
    return json_answer(201, {"credential": credential})
