"""The dashboard's login: a signed session cookie, and a CSRF token for every form.

Logging in with the admin token sets `admin_session`: `Secure` (sent over HTTPS only;
browsers count http://localhost as secure), `HttpOnly` (no script reads it),
`SameSite=Strict` (no other site's page sends it) and limited to `/admin`. Its value is
a random session id signed with `admin_session_secret` (itsdangerous), which also dates
it: past `admin_session_hours` it is refused. Every POST carries `csrf_token`, the
session id's HMAC: a forged form from elsewhere has no way to know it.
"""

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request, Response, status
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..deps import SettingsDep
from ..settings import Settings

COOKIE = "admin_session"
PATH = "/admin"


class LoginRequiredError(Exception):
    """No valid session: the page answers with a redirect to the login form."""


def session_key(settings: Settings) -> bytes:
    """The key that signs sessions: the setting, or one derived from the admin token."""
    if settings.admin_session_secret is not None:
        return settings.admin_session_secret.get_secret_value().encode()
    assert settings.admin_token is not None, "the dashboard is on only with a token"
    token = settings.admin_token.get_secret_value().encode()
    return hmac.new(token, b"admin-session-key", hashlib.sha256).digest()


def lifetime_seconds(settings: Settings) -> int:
    return int(settings.admin_session_hours * 3600)


def signer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(session_key(settings), salt="admin-session")


def token_matches(settings: Settings, offered: str) -> bool:
    """Whether `offered` is the admin token, compared in constant time."""
    assert settings.admin_token is not None
    expected = settings.admin_token.get_secret_value().encode()
    return secrets.compare_digest(offered.encode(), expected)


def start_session(response: Response, settings: Settings) -> None:
    """Give `response` a new session's cookie."""
    value = signer(settings).dumps(secrets.token_urlsafe(16))
    response.set_cookie(
        COOKIE,
        value,
        max_age=lifetime_seconds(settings),
        path=PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, secure=True, httponly=True, samesite="strict")


async def current_session(request: Request, settings: SettingsDep) -> str:
    """The session id of the request's cookie; `LoginRequiredError` without a valid one."""
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        raise LoginRequiredError
    try:
        session_id = signer(settings).loads(cookie, max_age=lifetime_seconds(settings))
    except BadSignature:
        raise LoginRequiredError from None
    if not isinstance(session_id, str):
        raise LoginRequiredError
    return session_id


SessionIdDep = Annotated[str, Depends(current_session)]


def csrf_of(settings: Settings, session_id: str) -> str:
    """The token every form of session `session_id` carries."""
    return hmac.new(session_key(settings), session_id.encode(), hashlib.sha256).hexdigest()


async def check_csrf(
    session_id: SessionIdDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> str:
    """For every POST: the form's `csrf_token` must be the session's; 403 otherwise.
    Returns the session id."""
    expected = csrf_of(settings, session_id).encode()
    if not secrets.compare_digest(csrf_token.encode(), expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "The form's CSRF token is missing or wrong.")
    return session_id


CheckedSessionDep = Annotated[str, Depends(check_csrf)]
"""The session id of a POST whose CSRF token matched."""
