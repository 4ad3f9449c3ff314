"""Choosing a dialect for a server: pinned, or detected with one cheap probe when verifying."""

from __future__ import annotations

import logging

from runwhen_operator.runwhen import client, dialect, documented, errors, platform

__all__ = ["for_dialect", "verify"]

log = logging.getLogger(__name__)


def for_dialect(which: dialect.Dialect, rw: client.RunWhenClient) -> dialect.Api:
    """The API of dialect ``which`` over the transport ``rw``."""
    if which is dialect.Dialect.PLATFORM:
        return platform.PlatformApi(rw)
    return documented.DocumentedApi(rw)


def _not_this_dialect(exc: errors.RunWhenError) -> bool:
    """A probe answer that says the server speaks another shape: a redirect (a trailing-slash
    mismatch), no such path or method, or a body that is not the expected list."""
    if isinstance(exc, errors.AuthError):
        return False
    code = exc.status_code
    return (
        dialect.not_supported(exc)
        or (code is not None and 300 <= code < 400)
        or (isinstance(exc, errors.UnexpectedResponseError) and code is not None and 200 <= code < 300)
    )


async def verify(rw: client.RunWhenClient, pinned: dialect.Dialect | None) -> dialect.Api:
    """Log in (password credentials) and prove the credentials with an authenticated request of the
    pinned dialect, or, when none is pinned, find the dialect: the documented API's slashed
    collection path (``GET /api/v3/workspaces/``) answers 200 only on a documented server; the
    platform answers it with a redirect to the unslashed path (FastAPI's ``redirect_slashes``) or a
    404, and then its own probe proves the credentials. Raises ``errors.AuthError`` when refused."""
    await rw.login()
    if pinned is not None:
        api = for_dialect(pinned, rw)
        await api.probe()
        return api
    documented_api = documented.DocumentedApi(rw)
    try:
        await documented_api.probe()
    except errors.RunWhenError as exc:
        if not _not_this_dialect(exc):
            raise
        log.debug("%s does not answer the documented API (%s): the platform API", rw.base_url, exc)
        platform_api = platform.PlatformApi(rw)
        await platform_api.probe()
        return platform_api
    return documented_api
