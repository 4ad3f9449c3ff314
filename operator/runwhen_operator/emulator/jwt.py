"""Minimal HS256 JSON Web Tokens (RFC 7519) built on the standard library."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

__all__ = ["JWTError", "decode", "encode"]

_HEADER = {"alg": "HS256", "typ": "JWT"}


class JWTError(ValueError):
    """The token is malformed or its signature does not match."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise JWTError("invalid base64url segment") from exc


def _sign(signing_input: bytes, key: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def encode(payload: dict[str, Any], key: bytes) -> str:
    """Serialise ``payload`` as a compact HS256 JWS."""
    header = _b64encode(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    return f"{header}.{body}.{_b64encode(_sign(signing_input, key))}"


def decode(token: str, key: bytes) -> dict[str, Any]:
    """Verify the signature of ``token`` and return its claims. Expiry is the caller's concern."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("not a compact JWS")
    header_b64, body_b64, signature_b64 = parts
    try:
        signing_input = f"{header_b64}.{body_b64}".encode("ascii")
    except UnicodeEncodeError as exc:
        raise JWTError("non-ASCII token") from exc
    if not hmac.compare_digest(_sign(signing_input, key), _b64decode(signature_b64)):
        raise JWTError("bad signature")
    try:
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(body_b64))
    except ValueError as exc:
        raise JWTError("undecodable segment") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise JWTError("unsupported algorithm")
    if not isinstance(claims, dict):
        raise JWTError("claims are not an object")
    return claims
