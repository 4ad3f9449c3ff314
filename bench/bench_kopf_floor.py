"""Kopf alone, in the operator's shape, at N = 1,000 and 5,000: the floor under the operator's numbers.

`bench/kopf_floor.py` does the measuring; this runs its ``observer`` shape (the operator's) in the
same `make bench` run as the operator, so the page compares both on the same machine and day. Kopf
does not talk to RunWhen: it runs once, with the platform dialect, and not again for the documented
one.
"""

from __future__ import annotations

from typing import Any

from bench import kopf_floor

SIZES = (1000, 5000)


def main(dialect: str) -> list[dict[str, Any]] | None:
    if dialect != "platform":
        return None
    return [kopf_floor.run(n, ("observer",)) for n in SIZES]
