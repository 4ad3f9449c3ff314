"""The documented dialect over a transport, built like the transport: the client tests drive both."""

from __future__ import annotations

from typing import Any

from runwhen_operator.runwhen import client, documented


class DocumentedClient(documented.DocumentedApi):
    """``DocumentedClient(url, credentials, **options)``: ``DocumentedApi`` over a new ``RunWhenClient``
    whose attributes (``_auth``, ``api_url``, ...) it passes through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(client.RunWhenClient(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rw, name)
