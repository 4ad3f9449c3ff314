"""The start of every pass of a managed kind: nothing is asked of RunWhen or Kubernetes before Kopf's
finalizer is on the object.

Kopf spawns an object's daemons on its first event, before it adds its finalizer, and runs the create
handler only after. A daemon woken in between (its Workspace turning Ready, its connection fixed)
that went on to create the remote object would leak it when the object is deleted before the
finalizer lands: Kubernetes deletes it at once, and no deletion pass ever runs (seen once in a full
suite run: 9 of 10 Workflows deleted while they were created got their deletion pass; the tenth's
remote workflow stayed).
"""

from __future__ import annotations

from typing import Any

import pytest

from runwhen_operator.api import common
from runwhen_operator.handlers import context, managed, runnerlocation, runtime
from runwhen_operator.reconcile import connections, listing


class Untouchable:
    """Records every attribute asked of it and refuses it."""

    def __init__(self, name: str, touched: list[str]) -> None:
        self._name, self._touched = name, touched

    def __getattr__(self, attr: str) -> Any:
        self._touched.append(f"{self._name}.{attr}")
        raise AssertionError(f"{self._name}.{attr} used")


def _ctx(touched: list[str]) -> context.Context:
    registry = connections.Registry()
    conn = connections.Connection(
        client=Untouchable("client", touched),  # type: ignore[arg-type]
        fingerprint="f",
        auth_mode="token",
        api=Untouchable("api", touched),  # type: ignore[arg-type]
        ready=True,
        verified=True,
    )
    registry._connections[(context.KIND_CLUSTER_CONNECTION, "", "default")] = conn
    return context.Context(
        slots=runtime.Slots(),
        kube=Untouchable("kube", touched),  # type: ignore[arg-type]
        registry=registry,
        listings=listing.ListingCache(),
    )


SPECS: dict[str, dict[str, Any]] = {
    context.KIND_WORKSPACE: {},
    context.KIND_WORKFLOW: {
        "workspaceName": "ws",
        "definition": {"spec": {"trigger": {"type": "manual"}, "actions": []}},
    },
    context.KIND_PERSONA: {"workspaceName": "ws"},
    context.KIND_RUNNER_LOCATION: {"workspaceName": "ws"},
}
RECONCILERS: dict[str, Any] = {
    context.KIND_WORKSPACE: managed.WorkspaceReconciler,
    context.KIND_WORKFLOW: managed.WorkflowReconciler,
    context.KIND_PERSONA: managed.PersonaReconciler,
    context.KIND_RUNNER_LOCATION: runnerlocation.RunnerLocationReconciler,
}


def _body(kind: str, *, finalizer: bool, deleting: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x", "namespace": "ns", "resourceVersion": "7", "generation": 1}
    meta["creationTimestamp"] = "2026-12-02T00:00:00Z"
    if finalizer:
        meta["finalizers"] = [common.FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T00:00:01Z"
    return {"metadata": meta, "spec": SPECS[kind]}


async def _pass(kind: str, body: dict[str, Any], touched: list[str]) -> runtime.Result:
    ctx = _ctx(touched)
    slot = ctx.slots.open(kind, "ns", "x")
    slot.live = body
    result: runtime.Result = await RECONCILERS[kind](ctx)(runtime.Key(kind, "ns", "x"))
    return result


@pytest.mark.parametrize("kind", sorted(RECONCILERS))
@pytest.mark.parametrize(
    ("deleting", "expected"),
    [(False, runtime.Result(after=1.0)), (True, runtime.Result())],
    ids=["new", "deleted-without-finalizer"],
)
async def test_no_pass_before_kopfs_finalizer(kind: str, deleting: bool, expected: runtime.Result) -> None:
    touched: list[str] = []
    assert await _pass(kind, _body(kind, finalizer=False, deleting=deleting), touched) == expected
    assert touched == []  # neither RunWhen nor Kubernetes was asked anything


@pytest.mark.parametrize("kind", sorted(RECONCILERS))
async def test_with_the_finalizer_the_pass_goes_on(kind: str) -> None:
    """The same fakes notice a pass that goes on: the check above can fail."""
    touched: list[str] = []
    with pytest.raises(AssertionError, match="used"):
        await _pass(kind, _body(kind, finalizer=True, deleting=False), touched)
    assert touched
