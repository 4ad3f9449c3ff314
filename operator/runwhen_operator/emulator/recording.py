"""``--record-exchanges DIR``: one JSON line per API exchange, for contract checks of a client.

Each process appends to ``DIR/exchanges-<pid>.jsonl`` and flushes every line, so a killed emulator
leaves complete lines behind. A line holds ``dialect``, ``method``, ``path``, ``query``,
``requestContentType``, ``userAgent``, ``requestBody`` (text or null), ``status``,
``responseContentType``, ``responseBody`` (text or null), ``fault`` (null, ``"error"``,
``"rateLimit"``, ``"failAfterCommit"`` or ``"dropped"``) and ``clientGone`` (the client's connection
was lost before its request arrived in full: no body, status 0).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

__all__ = ["ExchangeRecorder", "text_or_none"]

log = logging.getLogger("runwhen_operator.emulator")


def text_or_none(raw: bytes | None) -> str | None:
    """A body as text (undecodable bytes replaced), or None when there is none."""
    if not raw:
        return None
    return raw.decode("utf-8", errors="replace")


class ExchangeRecorder:
    """Appends exchanges to ``directory/exchanges-<pid>.jsonl``."""

    def __init__(self, directory: Path, dialect: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"exchanges-{os.getpid()}.jsonl"
        self.dialect = dialect
        self._handle: IO[str] | None = self.path.open("a", encoding="utf-8")

    def record(self, exchange: dict[str, Any]) -> None:
        handle = self._handle
        if handle is None:
            return
        line = json.dumps({"dialect": self.dialect, **exchange}, separators=(",", ":"))
        try:
            handle.write(line + "\n")
            handle.flush()
        except OSError:
            log.exception("cannot write to %s", self.path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
