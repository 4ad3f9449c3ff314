"""Errors raised by the RunWhen API client.

Every error carries ``retryable``: whether trying the same operation again later can succeed without
changing the request. Messages never contain credentials, tokens or bodies of token responses.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AuthError",
    "AuthenticationError",
    "ConflictError",
    "IdentityMismatchError",
    "InvalidRequestError",
    "InvalidTokenError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RejectedAfterCreateError",
    "ResponseTooLargeError",
    "RunWhenError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "WorkspaceRenamedError",
    "WriteOutcomeUnknownError",
]


class RunWhenError(Exception):
    """Base class of every error the client raises."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"retryable={self.retryable!r})"
        )


class InvalidRequestError(RunWhenError):
    """400 or 422: the server rejected the request body or query; sending it again will not help.

    ``field_errors`` maps a field (dotted for nested fields, ``non_field_errors`` for errors not tied
    to a field) to the server's messages.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 400,
        field_errors: Mapping[str, list[str]] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)
        self.field_errors: dict[str, list[str]] = {k: list(v) for k, v in (field_errors or {}).items()}


class RejectedAfterCreateError(InvalidRequestError):
    """The object was created, but a write that had to follow (setting its fields) was refused: it
    exists, it is ours (``external_id``), and its spec needs fixing."""

    def __init__(
        self,
        message: str,
        *,
        external_id: object,
        status_code: int | None = None,
        field_errors: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, field_errors=field_errors)
        self.external_id = external_id


class AuthError(RunWhenError):
    """The credentials are missing, wrong, expired or not allowed to do this."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class AuthenticationError(AuthError):
    """401: the server does not accept the credentials (after one refresh or re-login)."""

    def __init__(self, message: str, *, status_code: int | None = 401, retryable: bool = False) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class InvalidTokenError(AuthenticationError):
    """The token endpoint answered with an access token that cannot be used: already expired when it
    arrived (its ``exp`` is not after its ``iat``, or in the past), or refused by the server on its
    first use. A failed login: the next one waits (see ``docs/client.md``, Limits)."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = True) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class PermissionDeniedError(AuthError):
    """403: authenticated, but not allowed."""

    def __init__(self, message: str, *, status_code: int | None = 403, retryable: bool = False) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class NotFoundError(RunWhenError):
    """404: the object (or its workspace) does not exist."""

    def __init__(self, message: str, *, status_code: int | None = 404, retryable: bool = False) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class ConflictError(RunWhenError):
    """409: the request conflicts with the current remote state; observe again, then retry."""

    def __init__(self, message: str, *, status_code: int | None = 409, retryable: bool = True) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class RateLimitedError(RunWhenError):
    """429 after the client's own retries, or with a ``Retry-After`` longer than it waits in a call."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)
        self.retry_after = retry_after


class ServerError(RunWhenError):
    """5xx after the client's own retries (or on a request that is not retried)."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = True) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class TransportError(RunWhenError):
    """The server could not be reached or the connection failed (no HTTP status)."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = True) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class UnexpectedResponseError(RunWhenError):
    """The server answered something the client does not understand (a redirect, a malformed body,
    a pagination link to another origin)."""

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class ResponseTooLargeError(UnexpectedResponseError):
    """The server answered more than the client reads of one response (``max_response_bytes``);
    nothing of the body is kept. Retryable, so that the caller backs off before asking again."""

    def __init__(
        self, message: str, *, status_code: int | None = None, limit: int, retryable: bool = True
    ) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)
        self.limit = limit


class WriteOutcomeUnknownError(RunWhenError):
    """A non-idempotent write (POST) failed after it was sent: it may or may not have been applied.

    Retrying blindly could apply it twice (two POSTs create two workflows). Observe the remote state
    first (list or get), and only send the write again if it is not there.
    """

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = True) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable)


class WorkspaceRenamedError(RunWhenError):
    """The server created the workspace under another name than the one asked for (it auto-suffixes a
    taken name: ``myws`` -> ``myws-2``). Never adopted: the name is taken by a workspace this user may
    not see, and a human must choose another ``spec.name``."""

    def __init__(self, message: str, *, requested: str, given: str) -> None:
        super().__init__(message, status_code=None, retryable=False)
        self.requested = requested
        self.given = given


class IdentityMismatchError(RunWhenError):
    """The server answered about another object than the one asked for (a create of workspace ``a``
    answered with workspace ``b``). The remote identity comes from the spec, never from such an
    answer: nothing of it is recorded, and the object is looked at again later."""

    def __init__(self, message: str, *, expected: str, given: str) -> None:
        super().__init__(message, status_code=None, retryable=True)
        self.expected = expected
        self.given = given
