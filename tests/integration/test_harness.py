"""Proof that the test control plane is a real Kubernetes API server, not a mock."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from kubernetes import client

from tests.support.controlplane import Cluster, ServiceAccountKubeconfig, apply_manifest

pytestmark = pytest.mark.integration

GROUP = f"h{uuid.uuid4().hex[:8]}.test.runwhen.com"


def _throwaway_crd(plural: str) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "min": {"type": "integer"},
                                        "max": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": "self.min <= self.max", "message": "min must not exceed max"}
                                    ],
                                },
                                "status": {"type": "object", "properties": {"seen": {"type": "boolean"}}},
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def widget_crd(k8s_api: client.ApiClient) -> str:
    plural = "widgets"
    apply_manifest(k8s_api, _throwaway_crd(plural))
    ext = client.ApiextensionsV1Api(k8s_api)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return plural
        time.sleep(0.1)
    raise TimeoutError("throwaway CRD never became Established")


def test_server_reports_the_built_version(control_plane: Cluster) -> None:
    if control_plane.local is None:
        pytest.skip("external cluster: version is whatever it runs")
    expected = f"v{os.environ.get('KUBE_VERSION', '1.35.8')}"
    assert control_plane.version == expected


def test_cel_rule_rejects_invalid_object_with_its_message(
    k8s_api: client.ApiClient, widget_crd: str, namespace: str
) -> None:
    api = client.CustomObjectsApi(k8s_api)
    good = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "ok"},
        "spec": {"min": 1, "max": 2},
    }
    api.create_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, good)
    bad = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "bad"},
        "spec": {"min": 3, "max": 2},
    }
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, bad)
    assert err.value.status == 422
    assert "min must not exceed max" in err.value.body


def test_status_subresource_is_separate_from_spec(
    k8s_api: client.ApiClient, widget_crd: str, namespace: str
) -> None:
    api = client.CustomObjectsApi(k8s_api)
    obj = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "s"},
        "spec": {"min": 1, "max": 1},
    }
    created = api.create_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, obj)
    # status in the main resource is ignored; the status subresource stores it without a generation bump
    assert "status" not in created
    api.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, widget_crd, "s", {"status": {"seen": True}}
    )
    got = api.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "s")
    assert got["status"] == {"seen": True}
    assert got["metadata"]["generation"] == created["metadata"]["generation"]


def test_finalizer_holds_deletion_until_removed(
    k8s_api: client.ApiClient, widget_crd: str, namespace: str
) -> None:
    api = client.CustomObjectsApi(k8s_api)
    obj = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "held", "finalizers": ["harness.test/hold"]},
        "spec": {"min": 0, "max": 0},
    }
    api.create_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, obj)
    api.delete_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "held")
    got = api.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "held")
    assert got["metadata"]["deletionTimestamp"]
    api.patch_namespaced_custom_object(
        GROUP, "v1", namespace, widget_crd, "held", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(client.ApiException) as err:
        api.get_namespaced_custom_object(GROUP, "v1", namespace, widget_crd, "held")
    assert err.value.status == 404


def test_serviceaccount_without_binding_is_denied(
    control_plane: Cluster,
    k8s_api: client.ApiClient,
    namespace: str,
    sa_kubeconfig: ServiceAccountKubeconfig,
) -> None:
    admin = client.CoreV1Api(k8s_api)
    assert admin.list_namespaced_config_map(namespace).items is not None
    sa_api = control_plane.api_client(sa_kubeconfig(namespace, "nobody"))
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(sa_api).list_namespaced_config_map(namespace)
    assert err.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in err.value.body

    # and a RoleBinding grants exactly what it says
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="cm-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="cm-reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="cm-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=namespace)],
        ),
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            client.CoreV1Api(sa_api).list_namespaced_config_map(namespace)
            break
        except client.ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with pytest.raises(client.ApiException) as err2:
        client.CoreV1Api(sa_api).list_namespaced_secret(namespace)
    assert err2.value.status == 403
