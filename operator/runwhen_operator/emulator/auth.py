"""Token issuing and checking: JWT access and refresh tokens with rotation, plus a static API token.

The one user logs in with its user name or (platform dialect) its e-mail address."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

from runwhen_operator.emulator import jwt

__all__ = ["AuthError", "TokenService"]


class AuthError(Exception):
    """A 401 answer."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TokenService:
    """One user (``username``/``password``), optionally one static API token.

    Access and refresh tokens are HS256 JWTs signed with ``key``. Refreshing rotates the refresh token:
    the one presented is revoked. ``exp`` and ``iat`` are NumericDates with millisecond precision.
    """

    def __init__(
        self,
        *,
        username: str,
        password: str,
        api_token: str | None,
        access_lifetime: float,
        refresh_lifetime: float,
        key: bytes,
        email: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.username = username
        self.email = email or username
        self.password = password
        self.api_token = api_token
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.key = key
        self.clock = clock
        self._revoked: dict[str, float] = {}

    @staticmethod
    def _same(given: str, expected: str) -> bool:
        return hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
        )

    def _token(self, token_type: str, lifetime: float, now: float) -> str:
        claims: dict[str, Any] = {
            "token_type": token_type,
            "type": token_type,
            "sub": self.username,
            "jti": secrets.token_hex(16),
            "iat": round(now, 3),
            "exp": round(now + lifetime, 3),
        }
        return jwt.encode(claims, self.key)

    def _pair(self) -> dict[str, str]:
        now = self.clock()
        return {
            "access": self._token("access", self.access_lifetime, now),
            "refresh": self._token("refresh", self.refresh_lifetime, now),
        }

    def obtain(self, username: str, password: str, *, email: str | None = None) -> dict[str, str]:
        """``{access, refresh}`` for the right credentials (the user name, or the e-mail address when
        ``email`` is given instead); AuthError otherwise."""
        login, expected = (email, self.email) if email is not None else (username, self.username)
        if not (self._same(login, expected) and self._same(password, self.password)):
            raise AuthError("No active account found with the given credentials")
        return self._pair()

    def _claims(self, token: str, token_type: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self.key)
        except jwt.JWTError as exc:
            raise AuthError("Given token not valid for any token type") from exc
        exp = claims.get("exp")
        if claims.get("type") != token_type or isinstance(exp, bool) or not isinstance(exp, int | float):
            raise AuthError("Given token not valid for any token type")
        if self.clock() >= exp:
            raise AuthError("Token is invalid or expired")
        return claims

    def refresh(self, token: str) -> dict[str, str]:
        """A new pair for a valid refresh token, which is revoked; AuthError otherwise."""
        claims = self._claims(token, "refresh")
        jti = str(claims.get("jti"))
        if jti in self._revoked:
            raise AuthError("Token is blacklisted")
        self._prune()
        self._revoked[jti] = float(claims["exp"])
        return self._pair()

    def _prune(self) -> None:
        now = self.clock()
        for jti in [jti for jti, exp in self._revoked.items() if exp <= now]:
            del self._revoked[jti]

    def verify(self, token: str) -> None:
        """Nothing for a valid, unexpired access or refresh token (or the static token); AuthError
        otherwise."""
        if self.api_token is not None and self._same(token, self.api_token):
            return
        try:
            claims = jwt.decode(token, self.key)
        except jwt.JWTError as exc:
            raise AuthError("Token is invalid or expired") from exc
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or self.clock() >= exp:
            raise AuthError("Token is invalid or expired")

    def authenticate(self, authorization: str | None) -> str:
        """The user behind an ``Authorization`` header value; AuthError if there is none."""
        if not authorization:
            raise AuthError("Authentication credentials were not provided.")
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise AuthError("Authorization header must contain two space-delimited values: Bearer <token>")
        if self.api_token is not None and self._same(credentials, self.api_token):
            return self.username
        claims = self._claims(credentials, "access")
        return str(claims.get("sub", self.username))
