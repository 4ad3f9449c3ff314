"""End-to-end on a real cluster (kind): the operator's image, installed by the chart, against the emulator.

Runs only with RUNWHEN_E2E=1, against the current kubeconfig context, after .github/workflows/e2e.yaml
(or the same steps by hand) has:
- built and loaded the images (`docker build --target operator` / `--target emulator`),
- applied tests/e2e/emulator.yaml in runwhen-system,
- created the Secret runwhen-system/runwhen-credentials (admin/admin) and installed the chart with
  `connection.create=true`, `connection.url=http://runwhen-emulator.runwhen-system.svc:8080`,
  `connection.existingSecret=runwhen-credentials`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.skipif(
    os.environ.get("RUNWHEN_E2E") != "1", reason="set RUNWHEN_E2E=1 (kind cluster)"
)

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "platform.runwhen.com", "v1alpha1"
SYSTEM = "runwhen-system"
TIMEOUT = float(os.environ.get("RUNWHEN_E2E_TIMEOUT", "120"))


@pytest.fixture(scope="module")
def api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()
    return client.ApiClient()


@pytest.fixture
def namespace(api: Any) -> Iterator[str]:
    from kubernetes import client

    name = f"e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(api).delete_namespace(name)


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def emulator_state(api: Any) -> dict[str, Any]:
    """GET /_emulator/state through the API server's service proxy."""
    from kubernetes import client

    raw = client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
        "runwhen-emulator:8080", SYSTEM, "_emulator/state", _preload_content=False
    )
    return dict(json.loads(raw.data))


def example(name: str, namespace: str) -> dict[str, Any]:
    doc = dict(yaml.safe_load((ROOT / "examples" / name).read_text()))
    doc["metadata"] = {**doc["metadata"], "namespace": namespace}
    return doc


def test_operator_is_available(api: Any) -> None:
    from kubernetes import client

    deployment = client.AppsV1Api(api).read_namespaced_deployment("runwhen-operator", SYSTEM)
    assert deployment.status.available_replicas == 1
    pod_spec = deployment.spec.template.spec
    assert pod_spec.containers[0].security_context.read_only_root_filesystem is True


def test_default_connection_is_ready(api: Any) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)

    def ready() -> bool:
        conn = custom.get_cluster_custom_object(GROUP, VERSION, "clusterrunwhenconnections", "default")
        return condition(conn, "Ready").get("status") == "True"

    wait_for("ClusterRunWhenConnection default Ready", ready)


def test_examples_reconcile_end_to_end(api: Any, namespace: str) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    suffix = namespace.removeprefix("e2e-")
    workspace = example("workspace.yaml", namespace)
    workspace["spec"]["name"] = f"demo-{suffix}"  # remote names are global in the emulator
    persona = example("persona.yaml", namespace)
    workflow = example("workflow.yaml", namespace)
    for doc, plural in ((workspace, "workspaces"), (persona, "personas"), (workflow, "workflows")):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, doc)

    def ready(plural: str, name: str) -> Callable[[], bool]:
        def check() -> bool:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            return (
                condition(obj, "Ready").get("status") == "True"
                and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
            )

        return check

    for plural, doc in (("workspaces", workspace), ("personas", persona), ("workflows", workflow)):
        wait_for(f"{plural}/{doc['metadata']['name']} Ready", ready(plural, doc["metadata"]["name"]))

    state = emulator_state(api)
    remote_name = workspace["spec"]["name"]
    assert remote_name in {w["name"] for w in state["workspaces"]}
    remote_workflows = [w for w in state["workflows"] if w["workspace"] == remote_name]
    assert [w["name"] for w in remote_workflows] == [workflow["metadata"]["name"]]

    # the webhook token lands in the Secret the Workflow names, owned by the Workflow
    secret_name = workflow["spec"]["webhookTokenSecretRef"]["name"]
    secret = wait_for("webhook Secret", lambda: _read_secret(core, namespace, secret_name))
    assert secret.data["token"]
    assert secret.metadata.owner_references[0].kind == "Workflow"

    # deleting the Workflow deletes the remote workflow (deletionPolicy Delete)
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "workflows", workflow["metadata"]["name"]
    )
    wait_for(
        "remote workflow deleted",
        lambda: not [w for w in emulator_state(api)["workflows"] if w["workspace"] == remote_name],
    )
    # deleting the Workspace orphans the remote workspace (the default for workspaces)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "personas", persona["metadata"]["name"])
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "workspaces", workspace["metadata"]["name"]
    )
    wait_for(
        "Workspace object gone",
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "workspaces")["items"],
    )
    assert remote_name in {w["name"] for w in emulator_state(api)["workspaces"]}


def _read_secret(core: Any, namespace: str, name: str) -> Any:
    from kubernetes import client

    try:
        return core.read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_operator_was_never_forbidden(api: Any) -> None:
    """The chart's RBAC is sufficient: no 403 in the operator's log."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(SYSTEM, label_selector="app.kubernetes.io/component=operator").items
    assert pods
    for pod in pods:
        log = core.read_namespaced_pod_log(pod.metadata.name, SYSTEM)
        forbidden = [line for line in log.splitlines() if "forbidden" in line.lower() or " 403" in line]
        assert not forbidden, "\n".join(forbidden[:20])
