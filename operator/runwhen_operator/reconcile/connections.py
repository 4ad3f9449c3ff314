"""One RunWhen client (connection pool, token, rate limiter) per connection object.

A connection is rebuilt only when what it is made of changes: the URL, the Secret's data, the CA
bundle, the rate limit or the timeout. The fingerprint of those decides, so a rotated Secret is
picked up at the next look without a restart, and an unchanged one costs no new login.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runwhen_operator.runwhen import apis, auth, client, dialect, errors

log = logging.getLogger("runwhen_operator.connections")

ConnectionId = tuple[str, str, str]  # (kind, namespace, name); namespace "" for the cluster kind


class CredentialsError(ValueError):
    """The Secret does not hold usable credentials (the message names the keys, never values)."""


def credentials_from_secret(data: Mapping[str, str]) -> auth.PasswordCredentials | auth.TokenCredentials:
    token = (data.get("token") or "").strip()
    username = (data.get("username") or "").strip()
    password = data.get("password") or ""
    if token and (username or password):
        raise CredentialsError("the Secret has both `token` and `username`/`password`; keep one")
    if token:
        return auth.TokenCredentials(token)
    if username and password:
        return auth.PasswordCredentials(username, password)
    if username or password:
        raise CredentialsError("the Secret needs both `username` and `password`")
    raise CredentialsError("the Secret has neither `token` nor `username` and `password`")


@dataclass(frozen=True)
class Settings:
    url: str
    secret_data: Mapping[str, str] = field(repr=False)
    ca_bundle: str | None = None
    requests_per_second: float = 10.0
    burst: int = 20
    timeout_seconds: float = 30.0
    dialect: dialect.Dialect | None = None  # pinned; None: detected when verifying

    def fingerprint(self) -> str:
        material = json.dumps(
            {
                "url": self.url,
                "secret": sorted(self.secret_data.items()),
                "ca": self.ca_bundle or "",
                "rps": self.requests_per_second,
                "burst": self.burst,
                "timeout": self.timeout_seconds,
                "dialect": self.dialect.value if self.dialect else "Auto",
            },
            sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()


@dataclass
class Connection:
    client: client.RunWhenClient
    fingerprint: str
    auth_mode: str
    pinned: dialect.Dialect | None = None
    api: dialect.Api | None = None  # set once verified: the dialect the server speaks
    ready: bool = False
    reason: str = "Verifying"
    message: str = ""
    verified: bool = False
    recheck: bool = False  # a request was refused (401): log in again at the next check
    #: its Secret is gone: not ready, but the credentials read before still serve deletions
    retained: bool = False


ClientFactory = Callable[..., client.RunWhenClient]


class Registry:
    """Connections by id; `ensure` builds or reuses, `verify` logs in and records the verdict."""

    def __init__(self, client_factory: ClientFactory = client.RunWhenClient, **client_options: Any) -> None:
        self._connections: dict[ConnectionId, Connection] = {}
        self._factory = client_factory
        self._options = client_options

    def get(self, cid: ConnectionId) -> Connection | None:
        return self._connections.get(cid)

    async def ensure(self, cid: ConnectionId, settings: Settings) -> tuple[Connection, bool]:
        """The connection for `settings`, and whether it was (re)built."""
        fingerprint = settings.fingerprint()
        current = self._connections.get(cid)
        if current is not None and current.fingerprint == fingerprint:
            return current, False
        credentials = credentials_from_secret(settings.secret_data)
        new_client = self._factory(
            settings.url,
            credentials,
            ca_bundle=settings.ca_bundle or None,
            timeout_seconds=settings.timeout_seconds,
            requests_per_second=settings.requests_per_second,
            burst=settings.burst,
            **self._options,
        )
        mode = "token" if isinstance(credentials, auth.TokenCredentials) else "password"
        connection = Connection(
            client=new_client, fingerprint=fingerprint, auth_mode=mode, pinned=settings.dialect
        )
        self._connections[cid] = connection
        if current is not None:
            await current.client.aclose()
        return connection, True

    async def verify(self, cid: ConnectionId) -> Connection:
        connection = self._connections[cid]
        connection.recheck = connection.retained = False
        try:
            connection.api = await apis.verify(connection.client, connection.pinned)
        except errors.InvalidTokenError as exc:
            connection.ready, connection.reason, connection.message = False, "InvalidToken", str(exc)
        except errors.PermissionDeniedError as exc:
            connection.ready, connection.reason, connection.message = False, "Forbidden", str(exc)
        except errors.AuthError as exc:
            connection.ready, connection.reason, connection.message = False, "Unauthorized", str(exc)
        except errors.RunWhenError as exc:
            connection.ready, connection.reason, connection.message = False, "Unreachable", str(exc)
        else:
            connection.ready, connection.reason, connection.message = True, "Verified", "credentials verified"
        connection.verified = True
        return connection

    def request_recheck(self, cid: ConnectionId) -> bool:
        """RunWhen refused a request of one of the connection's objects (401, after the client
        renewed its token once): the connection logs in again at its next check, and whether it may
        be used stays as it is until that check says otherwise, so one object's refusal neither flips
        every dependent nor re-queues them. True when the check was not asked for already."""
        connection = self._connections.get(cid)
        if connection is None or connection.recheck:
            return False
        connection.recheck = True
        return True

    def retain_for_deletions(self, cid: ConnectionId, reason: str, message: str) -> None:
        """The Secret is gone: the connection is not ready (``reason``), but its client and the
        credentials it read stay, for the objects being deleted to finish their deletions."""
        connection = self._connections.get(cid)
        if connection is not None:
            connection.ready, connection.reason, connection.message = False, reason, message
            connection.retained = True

    async def remove(self, cid: ConnectionId) -> None:
        connection = self._connections.pop(cid, None)
        if connection is not None:
            await connection.client.aclose()

    async def close(self) -> None:
        for cid in list(self._connections):
            await self.remove(cid)
