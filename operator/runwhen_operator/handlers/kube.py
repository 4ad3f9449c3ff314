"""Kubernetes writes and reads the operator makes besides Kopf's watches.

Kopf watches, adds and removes its finalizer and applies the status a change handler returns; this
is the one other client stack: Secrets, the Lease, and the status writes of daemons. The `kubernetes`
client is synchronous; calls run in a dedicated thread pool (the Lease has its own, so reconcile work
never starves it), every call has a timeout (`timeout` seconds, the `--kube-timeout` flag), and every
failure is one of the `KubeError` kinds below. Every write is deliberate: status patches only when
the status changed, guarded by a resourceVersion where a decision depends on it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config

from runwhen_operator.api import common

log = logging.getLogger("runwhen_operator.kube")

T = TypeVar("T")
Body = dict[str, Any]


class KubeError(Exception):
    """A Kubernetes API call failed (no answer in time, a 5xx, a refused request)."""


class Conflict(KubeError):
    """The object changed since it was read (HTTP 409): read again and retry."""


class Gone(KubeError):
    """The object no longer exists (HTTP 404)."""


class Denied(KubeError):
    """The operator's RBAC does not allow the call (HTTP 403)."""


DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SecretView:
    """A Secret as the operator reads it: decoded data, labels, annotations, owners' uids."""

    data: dict[str, str]
    labels: dict[str, str]
    annotations: dict[str, str]
    owner_uids: frozenset[str]


def _detail(exc: client.ApiException) -> str:
    """The API server's own message (a Status object's `message`), if it sent one."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        return ""
    return str(message or "")[:512]


def _as_body(result: object) -> Body:
    if not isinstance(result, dict):
        raise TypeError(f"unexpected answer from the API server: {type(result).__name__}")
    return result


def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return cfg


class Kube:
    """Thin async facade over the parts of the Kubernetes API the operator writes to."""

    def __init__(
        self,
        configuration: client.Configuration,
        *,
        threads: int = 16,
        event_namespace: str = "default",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        # The API server accepts an Event about a cluster-scoped object only in `default`.
        self.event_namespace = event_namespace
        self.api = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        self.writes = 0  # every write this process made (for tests and benchmarks)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except client.ApiException as exc:
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from None
            if exc.status == 404:
                raise Gone(str(exc.reason)) from None
            if exc.status == 403:
                raise Denied(str(exc.reason)) from None
            raise KubeError(f"HTTP {exc.status}: {exc.reason} {_detail(exc)}".strip()) from None
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(f"no answer from the API server: {exc}") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    # -- custom objects ----------------------------------------------------------------------
    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Body, *, resource_version: str | None = None
    ) -> Body:
        """Merge-patch the status; with `resource_version`, only if the object is still at it (409)."""
        self.writes += 1
        payload: Body = {"status": status}
        if resource_version:
            payload["metadata"] = {"resourceVersion": resource_version}
        if namespace:
            result = await self.call(
                self.custom.patch_namespaced_custom_object_status,
                common.GROUP,
                common.VERSION,
                namespace,
                plural,
                name,
                payload,
            )
        else:
            result = await self.call(
                self.custom.patch_cluster_custom_object_status,
                common.GROUP,
                common.VERSION,
                plural,
                name,
                payload,
            )
        return _as_body(result)

    async def delete_object(self, plural: str, namespace: str, name: str) -> None:
        self.writes += 1
        await self.call(
            self.custom.delete_namespaced_custom_object, common.GROUP, common.VERSION, namespace, plural, name
        )

    # -- events ------------------------------------------------------------------------------
    async def event(self, body: Body, type_: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        namespace = meta.get("namespace") or self.event_namespace
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{meta['name']}.{uuid.uuid4().hex[:12]}", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=body.get("apiVersion"),
                kind=body.get("kind"),
                name=meta["name"],
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="runwhen-operator"),
            reporting_component="runwhen-operator",
            reporting_instance="runwhen-operator",
        )
        self.writes += 1
        try:
            await self.call(self.core.create_namespaced_event, namespace, event)
        except KubeError as exc:  # events are best effort
            log.warning("could not record event %s on %s: %s", reason, meta["name"], exc)

    # -- secrets -----------------------------------------------------------------------------
    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's data, decoded. Raises Gone when it does not exist."""
        return (await self.read_secret_view(namespace, name)).data

    async def read_secret_view(self, namespace: str, name: str) -> SecretView:
        """The Secret's data (decoded), labels, annotations and owners. Raises Gone when it does not
        exist."""
        secret = await self.call(self.core.read_namespaced_secret, name, namespace)
        data: dict[str, str] = {}
        for key, value in (secret.data or {}).items():
            data[key] = base64.b64decode(value).decode()
        for key, value in (secret.string_data or {}).items():
            data[key] = value
        meta = secret.metadata
        return SecretView(
            data=data,
            labels=dict((meta.labels if meta else None) or {}),
            annotations=dict((meta.annotations if meta else None) or {}),
            owner_uids=frozenset(o.uid for o in ((meta.owner_references if meta else None) or [])),
        )

    async def apply_owned_secret(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        owner: Body,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
    ) -> bool:
        """Create the Secret, or patch it when its data (or labels, annotations) differ. Returns
        whether anything was written. The owner becomes the Secret's controller when it is in the
        Secret's namespace (an owner reference cannot cross namespaces); a Secret in another
        namespace carries only the labels and annotations."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        annotations = annotations or {}
        meta = owner["metadata"]
        owns = (meta.get("namespace") or "") == namespace
        owner_ref = client.V1OwnerReference(
            api_version=owner["apiVersion"],
            kind=owner["kind"],
            name=meta["name"],
            uid=meta["uid"],
            controller=True,
            block_owner_deletion=True,
        )
        try:
            existing = await self.call(self.core.read_namespaced_secret, name, namespace)
        except Gone:
            existing = None
        if existing is None:
            secret = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=name,
                    namespace=namespace,
                    labels=labels,
                    annotations=annotations or None,
                    owner_references=[owner_ref] if owns else None,
                ),
                type="Opaque",
                data=encoded,
            )
            self.writes += 1
            try:
                await self.call(self.core.create_namespaced_secret, namespace, secret)
            except Conflict:
                # Created meanwhile by someone else: decide on what is there now.
                existing = await self.call(self.core.read_namespaced_secret, name, namespace)
            else:
                return True
        existing_meta = existing.metadata
        owners = (existing_meta.owner_references if existing_meta else None) or []
        if not owns and any(o.controller for o in owners):
            raise Conflict(f"Secret {namespace}/{name} is controlled by another object")
        owned = not owns or any(o.uid == meta["uid"] for o in owners)
        current_labels = (existing_meta.labels if existing_meta else None) or {}
        current_annotations = (existing_meta.annotations if existing_meta else None) or {}
        marked = all(current_labels.get(k) == v for k, v in labels.items()) and all(
            current_annotations.get(k) == v for k, v in annotations.items()
        )
        if (existing.data or {}) == encoded and owned and marked:
            return False
        patch: Body = {"data": encoded, "metadata": {"labels": labels}}
        if annotations:
            patch["metadata"]["annotations"] = annotations
        if not owned:
            if any(o.controller for o in owners):
                raise Conflict(f"Secret {namespace}/{name} is controlled by another object")
            patch["metadata"]["ownerReferences"] = [
                *[self.api.sanitize_for_serialization(o) for o in owners],
                self.api.sanitize_for_serialization(owner_ref),
            ]
        self.writes += 1
        await self.call(self.core.patch_namespaced_secret, name, namespace, patch)
        return True
