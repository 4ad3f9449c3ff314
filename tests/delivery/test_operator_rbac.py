"""The chart's RBAC is sufficient: the real operator, authenticated as the chart's ServiceAccount and run
with the chart's arguments and environment, does its whole job (connection, workspace, workflow with its
webhook-token Secret, deletion, Events, and with several replicas the Lease) without a single 403.

Namespaced mode only: a cluster-wide operator here would reconcile every other test's objects in the
shared control plane. The cluster-wide install runs the same way in tests/e2e (kind).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.delivery import chart
from tests.delivery.test_chart_cluster import CHART_SA, _release

pytestmark = pytest.mark.integration

GROUP, VERSION = chart.GROUP, "v1alpha1"
TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], log: Path) -> Any:
    deadline = time.monotonic() + TIMEOUT
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(
        f"timed out waiting for {what} (last: {last})\n--- operator log ---\n{log.read_text()[-4000:]}"
    )


def _ready(obj: dict[str, Any]) -> bool:
    conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    return conds.get("Ready", {}).get("status") == "True"


def _chart_command(
    tools: chart.Tools, namespace: str, release: str, values: dict[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """The operator's arguments and environment as the chart renders them for this release (the ports
    aside: they must be free here)."""
    objs = chart.template(
        tools.helm,
        {**values, "fullnameOverride": release, "serviceAccount": {"name": CHART_SA}},
        namespace=namespace,
        release=release,
    )
    container = chart.container(objs)
    args = [a for a in container["args"] if not a.startswith(("--metrics-port=", "--health-port="))]
    env: dict[str, str] = {}
    for var in container["env"]:
        if var.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.namespace"}}:
            env[var["name"]] = namespace  # the downward API: the pod's namespace
        else:
            env[var["name"]] = var["value"]
    return args, env


@contextlib.contextmanager
def _operator(
    kubeconfig: Path, args: list[str], chart_env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        sys.executable,
        "-m",
        "runwhen_operator.cli",
        "run",
        *args,
        f"--kubeconfig={kubeconfig}",
        f"--health-port={_free_port()}",
        f"--metrics-port={_free_port()}",
        "--log-format=text",
    ]
    env = {**os.environ, **chart_env}
    env.pop("KUBECONFIG", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=chart.ROOT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("replicas", [1, 2])
def test_operator_works_with_the_namespaced_rbac(
    control_plane, k8s_api, namespace, crds_installed, sa_kubeconfig, emulator, tools, tmp_path, replicas
):
    watched = f"t-{uuid.uuid4().hex[:10]}"
    core, custom = client.CoreV1Api(k8s_api), client.CustomObjectsApi(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=watched)))
    conn_name = _create_connection(k8s_api, namespace, emulator.url)
    conn_ref = {"kind": "ClusterRunWhenConnection", "name": conn_name}
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        watched,
        "workspaces",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workspace",
            "metadata": {"name": "demo"},
            "spec": {"connectionRef": conn_ref, "displayName": "Demo", "deletionPolicy": "Delete"},
        },
    )
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        watched,
        "workflows",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workflow",
            "metadata": {"name": "triage"},
            "spec": {
                "connectionRef": conn_ref,
                "workspaceRef": {"name": "demo"},
                "definition": {
                    "fromActivities": [
                        {
                            "name": "on-alert",
                            "match": {"activityVerbs": ["detected"], "slxs": ["k8s-health"]},
                            "actions": [
                                {
                                    "tasks": {
                                        "slx": "k8s-health",
                                        "persona": "eager-edgar",
                                        "titles": ["Check"],
                                    }
                                }
                            ],
                        }
                    ]
                },
                "webhookTokenSecretRef": {"name": "triage-webhook"},
            },
        },
    )
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        watched,
        "personas",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Persona",
            "metadata": {"name": "eager-edgar"},
            "spec": {
                "connectionRef": conn_ref,
                "workspaceRef": {"name": "demo"},
                "fullName": "Eager Edgar",
                "filterConfidenceThreshold": 0.6,
            },
        },
    )
    log = tmp_path / "operator.log"
    try:
        values: dict[str, Any] = {"watchNamespaces": [watched], "replicaCount": replicas}
        with _release(tools, control_plane.kubeconfig, namespace, values) as release:
            kubeconfig = sa_kubeconfig(namespace, CHART_SA, create=False)
            args, env = _chart_command(tools, namespace, release, values)
            assert env == {"RUNWHEN_OPERATOR_NAMESPACE": namespace}
            assert (f"--peering={release}" in args) == (replicas > 1)
            leases = client.CoordinationV1Api(k8s_api)
            with _operator(kubeconfig, args, env, log) as proc:
                if replicas > 1:
                    _wait("the Lease", lambda: "became the leader" in log.read_text(), log)
                    lease = leases.read_namespaced_lease(release, namespace)
                    assert lease.spec.holder_identity.endswith(f"-{proc.pid}")

                def get(plural: str, name: str) -> dict[str, Any]:
                    return custom.get_namespaced_custom_object(GROUP, VERSION, watched, plural, name)

                def connection() -> dict[str, Any]:
                    return custom.get_cluster_custom_object(
                        GROUP, VERSION, "clusterrunwhenconnections", conn_name
                    )

                def names(plural: str) -> set[str]:
                    if plural == "clusterrunwhenconnections":
                        items = custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
                    else:
                        items = custom.list_namespaced_custom_object(GROUP, VERSION, watched, plural)["items"]
                    return {i["metadata"]["name"] for i in items}

                _wait("the connection to be Ready", lambda: _ready(connection()), log)
                _wait("the Workspace to be Ready", lambda: _ready(get("workspaces", "demo")), log)
                _wait("the Workflow to be Ready", lambda: _ready(get("workflows", "triage")), log)
                _wait("the Persona to be Ready", lambda: _ready(get("personas", "eager-edgar")), log)
                assert [p["name"] for p in emulator.live("personas")] == ["eager-edgar"]
                secret = _wait("the webhook Secret", lambda: _secret(core, watched, "triage-webhook"), log)
                assert secret.data["token"]
                assert [w["name"] for w in emulator.live("workflows")] == ["triage"]
                # the operator wrote status and its finalizer only: no spec change (the generation
                # would move), no annotations (a GitOps tool would see no diff either way)
                for plural, name in (
                    ("workspaces", "demo"),
                    ("workflows", "triage"),
                    ("personas", "eager-edgar"),
                ):
                    obj = get(plural, name)
                    assert obj["metadata"]["generation"] == 1, obj["metadata"]
                    assert not obj["metadata"].get("annotations"), obj["metadata"]
                    assert obj["metadata"]["finalizers"] == ["platform.runwhen.com/finalizer"]

                # deletion: remote objects go, finalizers are removed
                custom.delete_namespaced_custom_object(GROUP, VERSION, watched, "workflows", "triage")
                custom.delete_namespaced_custom_object(GROUP, VERSION, watched, "personas", "eager-edgar")
                _wait("the children to be gone", lambda: not names("workflows") | names("personas"), log)
                assert emulator.live("workflows") == []
                assert emulator.live("personas") == []
                custom.delete_namespaced_custom_object(GROUP, VERSION, watched, "workspaces", "demo")
                _wait("the Workspace to be gone", lambda: not names("workspaces"), log)
                assert emulator.live("workspaces") == []
                custom.delete_cluster_custom_object(GROUP, VERSION, "clusterrunwhenconnections", conn_name)
                _wait(
                    "the connection to be gone",
                    lambda: conn_name not in names("clusterrunwhenconnections"),
                    log,
                )
                assert proc.poll() is None, "the operator exited"
            assert proc.returncode == 0, log.read_text()[-3000:]
            if replicas > 1:  # a clean shutdown released the Lease
                assert leases.read_namespaced_lease(release, namespace).spec.holder_identity is None
            else:
                assert not leases.list_namespaced_lease(namespace).items
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object(GROUP, VERSION, "clusterrunwhenconnections", conn_name)
        core.delete_namespace(watched)
    text = log.read_text()
    forbidden = [line for line in text.splitlines() if "forbidden" in line.lower() or " 403" in line]
    assert not forbidden, "\n".join(forbidden[:20])


def _create_connection(api: client.ApiClient, namespace: str, url: str) -> str:
    """A ClusterRunWhenConnection whose credentials Secret is in the operator's namespace."""
    name = f"conn-{namespace}"
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="creds"), string_data={"username": "admin", "password": "admin"}
        ),
    )
    client.CustomObjectsApi(api).create_cluster_custom_object(
        GROUP,
        VERSION,
        "clusterrunwhenconnections",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterRunWhenConnection",
            "metadata": {"name": name},
            "spec": {"url": url, "credentialsSecretRef": {"name": "creds", "namespace": namespace}},
        },
    )
    return name


def test_events_about_a_cluster_connection_are_recorded(
    control_plane, k8s_api, namespace, crds_installed, sa_kubeconfig, emulator, tools, tmp_path
):
    watched = f"t-{uuid.uuid4().hex[:10]}"
    core, custom = client.CoreV1Api(k8s_api), client.CustomObjectsApi(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=watched)))
    conn_name = _create_connection(k8s_api, namespace, emulator.url)
    log = tmp_path / "operator.log"

    def events() -> list[Any]:
        found = core.list_event_for_all_namespaces(field_selector=f"involvedObject.name={conn_name}").items
        return [e for e in found if e.involved_object.kind == "ClusterRunWhenConnection"]

    try:
        values: dict[str, Any] = {"watchNamespaces": [watched]}
        with _release(tools, control_plane.kubeconfig, namespace, values) as release:
            kubeconfig = sa_kubeconfig(namespace, CHART_SA, create=False)
            args, env = _chart_command(tools, namespace, release, values)
            with _operator(kubeconfig, args, env, log):
                _wait(
                    "an Event about the connection, or a failure to record one",
                    lambda: events() or "could not record event" in log.read_text(),
                    log,
                )
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object(GROUP, VERSION, "clusterrunwhenconnections", conn_name)
        core.delete_namespace(watched)
    assert "could not record event" not in log.read_text()
    assert [e.reason for e in events()][:1] == ["Verified"]


def _secret(core: client.CoreV1Api, namespace: str, name: str) -> Any:
    try:
        return core.read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.fixture(scope="module")
def tools() -> chart.Tools:
    return chart.tools()
