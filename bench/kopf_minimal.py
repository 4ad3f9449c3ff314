"""The least a Kopf operator of the operator's shape does: the floor its measurements stand on.

    python -m bench.kopf_minimal KUBECONFIG NAMESPACE [--shape observer|daemons|bare]

Same kinds, the operator's own Kopf settings (`handlers.operator.settings_for`: its finalizer, diff
base in status, progress annotations, worker limit and idle timeout, Events through Kopf), the
same indices of dependents, and a create handler that writes the Ready condition into Kopf's own
status patch and posts a `Created` Event, so a created object costs what it costs the operator in
Kubernetes writes (the finalizer, one status write, the Event). Nothing talks to RunWhen, nothing
is computed. The shape:

- ``observer`` (the operator's): an ``on.event`` handler per kind that does nothing (the operator's
  keeps the newest body for its scheduler);
- ``daemons`` (the operator's former shape): a ``reconcile`` daemon per object and a ``monitor``
  daemon per Workspace that only sleep;
- ``bare``: neither.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from typing import Any

import kopf
from kubernetes.config import kube_config

from runwhen_operator.handlers import operator

GROUP, VERSION = "platform.runwhen.com", "v1alpha1"
PLURALS = ("workspaces", "workflows", "personas")
SHAPES = ("observer", "daemons", "bare")


def build(shape: str) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings]:
    registry = kopf.OperatorRegistry()
    settings = operator.settings_for(operator.Config())  # the operator's own

    for plural in PLURALS:

        async def created(body: kopf.Body, patch: kopf.Patch, meta: kopf.Meta, **_: Any) -> None:
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch.status["observedGeneration"] = meta.get("generation")
            patch.status["conditions"] = [
                {
                    "type": kind,
                    "status": "True",
                    "reason": "Available",
                    "message": "created",
                    "lastTransitionTime": now,
                    "observedGeneration": meta.get("generation"),
                }
                for kind in ("Ready", "Synced")
            ]
            kopf.event(body, type="Normal", reason="Created", message="created")

        async def unchanged(**_: Any) -> None:
            return None

        kopf.on.create(GROUP, VERSION, plural, registry=registry, id="create")(created)
        kopf.on.update(GROUP, VERSION, plural, registry=registry, id="update")(unchanged)
        kopf.on.delete(GROUP, VERSION, plural, registry=registry, id="delete")(unchanged)
        if shape == "observer":

            async def observed(**_: Any) -> None:
                return None

            kopf.on.event(GROUP, VERSION, plural, registry=registry, id="observe")(observed)
        if shape == "daemons":
            jobs = ("reconcile", "monitor") if plural == "workspaces" else ("reconcile",)
            for job in jobs:

                async def sleeper(stopped: kopf.DaemonStopped, **_: Any) -> None:
                    await stopped.wait()

                kopf.daemon(GROUP, VERSION, plural, registry=registry, id=job, cancellation_timeout=1.0)(
                    sleeper
                )
        if plural != "workspaces":

            def index(namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any) -> Any:
                ref = (spec.get("workspaceRef") or {}).get("name")
                return {(namespace or "", str(ref)): name} if ref else None

            kopf.index(GROUP, VERSION, plural, registry=registry, id=f"{plural}-of-workspace")(index)
    return registry, settings


def main(argv: list[str]) -> None:
    kubeconfig, namespace = argv[0], argv[1]
    shape = argv[argv.index("--shape") + 1] if "--shape" in argv else "observer"
    if shape not in SHAPES:
        raise SystemExit(f"--shape: one of {', '.join(SHAPES)}")
    registry, settings = build(shape)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = kubeconfig
        return kopf.login_via_client(**kwargs)

    asyncio.run(kopf.operator(registry=registry, settings=settings, standalone=True, namespaces=[namespace]))


if __name__ == "__main__":
    main(sys.argv[1:])
