"""The chart and the kustomize bases against a real API server (kube-apiserver + etcd, RBAC on).

Pods never run there, so these tests check what the API server itself decides: that every object is
accepted (schemas, CRD validation), and that the RBAC the chart grants lets the operator's
ServiceAccount do its work and nothing else.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.delivery import chart

pytestmark = pytest.mark.integration

CHART_SA = "runwhen-operator"


@pytest.fixture(scope="module")
def tools() -> chart.Tools:
    return chart.tools()


def _helm(tools: chart.Tools, kubeconfig: Path, *args: str | Path) -> str:
    return chart.run([tools.helm, "--kubeconfig", kubeconfig, *args], timeout=120).stdout


@contextlib.contextmanager
def _release(
    tools: chart.Tools, kubeconfig: Path, namespace: str, values: dict[str, object]
) -> Iterator[str]:
    """`helm install` (no --wait: no pods run here), yield the release name, uninstall afterwards."""
    release = f"r{uuid.uuid4().hex[:8]}"
    _helm(
        tools,
        kubeconfig,
        "install",
        release,
        chart.CHART,
        "--namespace",
        namespace,
        "--set",
        f"fullnameOverride={release}",
        "--set",
        f"serviceAccount.name={CHART_SA}",
        *chart.set_args(values),
    )
    try:
        yield release
    finally:
        _helm(tools, kubeconfig, "uninstall", release, "--namespace", namespace)


@pytest.fixture
def extra_namespaces(k8s_api: client.ApiClient) -> Iterator[list[str]]:
    """Two more fresh namespaces (a watched one and an unwatched one)."""
    core = client.CoreV1Api(k8s_api)
    names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names:
        core.delete_namespace(name)


def _secret(api: client.ApiClient, namespace: str, name: str = "creds") -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"token": "x"}),
    )


def _workspace(api: client.ApiClient, namespace: str, name: str = "ws1") -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        chart.GROUP,
        "v1alpha1",
        namespace,
        "workspaces",
        {
            "apiVersion": "platform.runwhen.com/v1alpha1",
            "kind": "Workspace",
            "metadata": {"name": name},
            "spec": {"displayName": "test"},
        },
    )


def _status(exc: client.ApiException) -> int:
    return int(exc.status)


def _forbidden(call, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(client.ApiException) as info:
        call(*args, **kwargs)
    assert _status(info.value) == 403, info.value


def test_install_creates_the_expected_objects(control_plane, k8s_api, namespace, crds_installed, tools):
    conn_name = f"conn-{namespace}"
    values = {
        "connection": {
            "create": True,
            "name": conn_name,
            "url": "https://papi.example.com",
            "token": "t0k",
            "rateLimit": {"requestsPerSecond": 5, "burst": 10},
            "timeoutSeconds": 20,
        }
    }
    with _release(tools, control_plane.kubeconfig, namespace, values) as release:
        apps = client.AppsV1Api(k8s_api)
        core = client.CoreV1Api(k8s_api)
        rbac = client.RbacAuthorizationV1Api(k8s_api)
        deployment = apps.read_namespaced_deployment(release, namespace)
        pod = deployment.spec.template.spec
        assert pod.service_account_name == CHART_SA
        assert pod.containers[0].security_context.read_only_root_filesystem is True
        assert core.read_namespaced_service_account(CHART_SA, namespace)
        assert core.read_namespaced_service(f"{release}-metrics", namespace).spec.ports[0].port == 9090
        assert rbac.read_cluster_role(release).rules
        binding = rbac.read_cluster_role_binding(release)
        assert binding.subjects[0].namespace == namespace
        secret = core.read_namespaced_secret(f"{release}-credentials", namespace)
        assert set(secret.data) == {"token"}
        conn = client.CustomObjectsApi(k8s_api).get_cluster_custom_object(
            chart.GROUP, "v1alpha1", "clusterrunwhenconnections", conn_name
        )
        assert conn["spec"]["credentialsSecretRef"] == {
            "name": f"{release}-credentials",
            "namespace": namespace,
        }
        assert conn["spec"]["rateLimit"] == {"requestsPerSecond": 5, "burst": 10}
        # the pod passes the restricted Pod Security Standard (enforced on pods, checked by a dry run)
        core.patch_namespace(
            namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
        )
        template = k8s_api.sanitize_for_serialization(deployment.spec.template)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "restricted-check"},
            "spec": template["spec"],
        }
        core.create_namespaced_pod(namespace, pod, dry_run="All")
        insecure = {**pod, "spec": {**template["spec"], "securityContext": {}}}
        insecure["spec"]["containers"] = [
            {**c, "securityContext": {}} for c in template["spec"]["containers"]
        ]
        with pytest.raises(client.ApiException) as denied:
            core.create_namespaced_pod(namespace, insecure, dry_run="All")
        assert _status(denied.value) == 403
        assert "PodSecurity" in str(denied.value.body)
    with pytest.raises(client.ApiException) as gone:
        client.RbacAuthorizationV1Api(k8s_api).read_cluster_role(release)
    assert _status(gone.value) == 404


def test_cluster_wide_rbac_allows_the_work_and_nothing_else(
    control_plane, k8s_api, namespace, extra_namespaces, crds_installed, tools, sa_kubeconfig
):
    other = extra_namespaces[0]
    _workspace(k8s_api, other)
    _secret(k8s_api, other)
    with _release(tools, control_plane.kubeconfig, namespace, {}):
        sa = control_plane.api_client(sa_kubeconfig(namespace, CHART_SA, create=False))
        custom = client.CustomObjectsApi(sa)
        core = client.CoreV1Api(sa)
        # its own kinds, everywhere
        listed = custom.list_cluster_custom_object(chart.GROUP, "v1alpha1", "workspaces")
        assert any(w["metadata"]["name"] == "ws1" for w in listed["items"])
        custom.list_namespaced_custom_object(chart.GROUP, "v1alpha1", other, "workflows")
        custom.patch_namespaced_custom_object_status(
            chart.GROUP, "v1alpha1", other, "workspaces", "ws1", {"status": {"observedGeneration": 1}}
        )
        custom.patch_namespaced_custom_object(
            chart.GROUP, "v1alpha1", other, "workspaces", "ws1", {"metadata": {"finalizers": ["x.io/f"]}}
        )
        custom.patch_namespaced_custom_object(
            chart.GROUP, "v1alpha1", other, "workspaces", "ws1", {"metadata": {"finalizers": None}}
        )
        # secrets by name only
        assert core.read_namespaced_secret("creds", other).data["token"]
        core.create_namespaced_secret(other, client.V1Secret(metadata=client.V1ObjectMeta(name="webhook")))
        core.patch_namespaced_secret("webhook", other, {"stringData": {"token": "t"}})
        _forbidden(core.list_namespaced_secret, other)
        _forbidden(core.list_secret_for_all_namespaces)
        _forbidden(core.delete_namespaced_secret, "creds", other)
        # events
        core.create_namespaced_event(
            other,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name="ws1."),
                involved_object=client.V1ObjectReference(kind="Workspace", name="ws1", namespace=other),
                reason="Test",
                message="test",
                type="Normal",
            ),
        )
        # not its business
        _forbidden(
            core.create_namespaced_config_map,
            other,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")),
        )
        _forbidden(client.AppsV1Api(sa).list_namespaced_deployment, other)
        _forbidden(
            client.AppsV1Api(sa).create_namespaced_deployment,
            other,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            },
        )
        _forbidden(
            custom.delete_namespaced_custom_object, chart.GROUP, "v1alpha1", other, "workspaces", "ws1"
        )
        _forbidden(
            custom.create_namespaced_custom_object,
            chart.GROUP,
            "v1alpha1",
            other,
            "workspaces",
            {
                "apiVersion": "platform.runwhen.com/v1alpha1",
                "kind": "Workspace",
                "metadata": {"name": "ws2"},
                "spec": {},
            },
        )
        _forbidden(client.CoreV1Api(sa).list_namespaced_pod, other)
        _forbidden(core.list_namespace)
        # one replica elects no leader: no Lease at all
        _forbidden(
            client.CoordinationV1Api(sa).create_namespaced_lease, namespace, _lease("runwhen-operator", "a")
        )


def test_namespaced_rbac_is_confined(
    control_plane, k8s_api, namespace, extra_namespaces, crds_installed, tools, sa_kubeconfig
):
    watched, unwatched = extra_namespaces
    for ns in (watched, unwatched):
        _workspace(k8s_api, ns)
        _secret(k8s_api, ns)
    _secret(k8s_api, namespace, "cluster-creds")
    with _release(tools, control_plane.kubeconfig, namespace, {"watchNamespaces": [watched]}):
        sa = control_plane.api_client(sa_kubeconfig(namespace, CHART_SA, create=False))
        custom = client.CustomObjectsApi(sa)
        core = client.CoreV1Api(sa)
        # the watched namespace: everything the operator needs
        custom.list_namespaced_custom_object(chart.GROUP, "v1alpha1", watched, "workspaces")
        custom.patch_namespaced_custom_object_status(
            chart.GROUP, "v1alpha1", watched, "workspaces", "ws1", {"status": {"observedGeneration": 1}}
        )
        assert core.read_namespaced_secret("creds", watched)
        core.create_namespaced_secret(watched, client.V1Secret(metadata=client.V1ObjectMeta(name="webhook")))
        _forbidden(core.list_namespaced_secret, watched)
        # cluster connections are cluster-scoped; their credentials are read in the operator's namespace
        custom.list_cluster_custom_object(chart.GROUP, "v1alpha1", "clusterrunwhenconnections")
        assert core.read_namespaced_secret("cluster-creds", namespace)
        _forbidden(
            core.create_namespaced_secret, namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="x"))
        )
        _forbidden(core.list_namespaced_secret, namespace)
        # anything outside the watched namespaces is denied
        _forbidden(core.read_namespaced_secret, "creds", unwatched)
        _forbidden(custom.list_namespaced_custom_object, chart.GROUP, "v1alpha1", unwatched, "workspaces")
        _forbidden(custom.list_cluster_custom_object, chart.GROUP, "v1alpha1", "workspaces")
        _forbidden(
            custom.patch_namespaced_custom_object_status,
            chart.GROUP,
            "v1alpha1",
            unwatched,
            "workspaces",
            "ws1",
            {"status": {"observedGeneration": 1}},
        )
        # Kopf follows the watched namespaces by listing namespaces: names only, nothing else about them
        core.list_namespace()
        _forbidden(core.patch_namespace, unwatched, {"metadata": {"labels": {"x": "y"}}})
        _forbidden(
            core.create_namespaced_config_map,
            watched,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")),
        )


def _lease(name: str, holder: str) -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=15),
    )


def test_replicas_may_use_their_own_lease_only(
    control_plane, k8s_api, namespace, extra_namespaces, crds_installed, tools, sa_kubeconfig
):
    other = extra_namespaces[0]
    admin = client.CoordinationV1Api(k8s_api)
    admin.create_namespaced_lease(namespace, _lease("someone-else", "x"))
    with _release(tools, control_plane.kubeconfig, namespace, {"replicaCount": 2}) as release:
        sa = control_plane.api_client(sa_kubeconfig(namespace, CHART_SA, create=False))
        leases = client.CoordinationV1Api(sa)
        # what leader election does: create the release's Lease, read it, renew it (a replace)
        leases.create_namespaced_lease(namespace, _lease(release, "pod-a"))
        lease = leases.read_namespaced_lease(release, namespace)
        assert lease.spec.holder_identity == "pod-a"
        lease.spec.holder_identity = "pod-b"
        leases.replace_namespaced_lease(release, namespace, lease)
        assert admin.read_namespaced_lease(release, namespace).spec.holder_identity == "pod-b"
        # nothing else: another Lease, another namespace, listing, deleting
        _forbidden(leases.read_namespaced_lease, "someone-else", namespace)
        taken = admin.read_namespaced_lease("someone-else", namespace)
        _forbidden(leases.replace_namespaced_lease, "someone-else", namespace, taken)
        _forbidden(leases.list_namespaced_lease, namespace)
        _forbidden(leases.list_lease_for_all_namespaces)
        _forbidden(leases.delete_namespaced_lease, release, namespace)
        _forbidden(leases.create_namespaced_lease, other, _lease(release, "pod-a"))
        _forbidden(leases.read_namespaced_lease, release, other)
        pdb = client.PolicyV1Api(k8s_api).read_namespaced_pod_disruption_budget(release, namespace)
        assert pdb.spec.min_available == 1
        # an upgrade keeps the Lease RBAC in place
        _helm(
            tools,
            control_plane.kubeconfig,
            "upgrade",
            release,
            chart.CHART,
            "--namespace",
            namespace,
            "--reuse-values",
        )
        assert leases.read_namespaced_lease(release, namespace).spec.holder_identity == "pod-b"
    with pytest.raises(client.ApiException) as gone:
        client.RbacAuthorizationV1Api(k8s_api).read_namespaced_role(f"{release}-leader-election", namespace)
    assert _status(gone.value) == 404
    # nothing of Kopf's peering anywhere in the API
    groups = {g.name for g in client.ApisApi(k8s_api).get_api_versions().groups}
    assert "kopf.dev" not in groups


def _kubectl(tools: chart.Tools, kubeconfig: Path, *args: str | Path):  # type: ignore[no-untyped-def]
    return chart.run([tools.kubectl, "--kubeconfig", kubeconfig, *args], check=False, timeout=120)


@pytest.fixture
def runwhen_system(k8s_api: client.ApiClient) -> str:
    """The namespace of the kustomize bases (dry runs of namespaced objects need it to exist)."""
    core = client.CoreV1Api(k8s_api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=chart.NAMESPACE)))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    return chart.NAMESPACE


@pytest.mark.parametrize("base", ["default", "ha"])
def test_kustomize_base_applies_cleanly(control_plane, crds_installed, runwhen_system, tools, base):
    proc = _kubectl(
        tools,
        control_plane.kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        "-k",
        chart.ROOT / "deploy" / base,
    )
    assert proc.returncode == 0, proc.stderr
    applied = proc.stdout.splitlines()
    assert any("deployment.apps/runwhen-operator" in line for line in applied), proc.stdout
    assert any("clusterrole.rbac.authorization.k8s.io/runwhen-operator" in line for line in applied)
    assert sum("customresourcedefinition" in line for line in applied) == len(
        list((chart.ROOT / "crds").glob("*.yaml"))
    )
    leader_election = [line for line in applied if "runwhen-operator-leader-election" in line]
    assert len(leader_election) == (2 if base == "ha" else 0), proc.stdout


def test_samples_are_valid_objects(control_plane, crds_installed, runwhen_system, tools):
    proc = _kubectl(
        tools,
        control_plane.kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        # Other tests own the cluster-wide `default` connection; a dry run need not negotiate fields.
        "--force-conflicts",
        "-k",
        chart.ROOT / "deploy/samples",
    )
    assert proc.returncode == 0, proc.stderr
    for kind in ("secret/", "clusterrunwhenconnection", "workspace", "workflow", "persona"):
        assert kind in proc.stdout.lower(), proc.stdout
