"""Pytest fixtures for a real Kubernetes control plane (etcd + kube-apiserver).

By default one control plane is started per test run (session scope) under `.testenv/pytest-<pid>/`
and torn down at the end; its logs are kept when a test failed. If `RUNWHEN_TEST_KUBECONFIG` points at
an existing cluster (kind, a CI cluster), the suite runs against that instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
import testenv  # noqa: E402


@dataclass
class Cluster:
    """What a test needs to talk to the control plane."""

    kubeconfig: Path
    server: str
    version: str
    local: testenv.ControlPlane | None  # None when running against an external cluster

    def api_client(self, kubeconfig: Path | None = None) -> client.ApiClient:
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig or self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)


def _failed(session: pytest.Session) -> bool:
    return bool(session.testsfailed)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    external = os.environ.get("RUNWHEN_TEST_KUBECONFIG")
    if external:
        path = Path(external)
        api = Cluster(kubeconfig=path, server="", version="", local=None).api_client()
        info = client.VersionApi(api).get_code()
        host = api.configuration.host
        yield Cluster(kubeconfig=path, server=host, version=info.git_version, local=None)
        return
    workdir = ROOT / ".testenv" / f"pytest-{os.getpid()}"
    shutil.rmtree(workdir, ignore_errors=True)
    cp = testenv.ControlPlane(workdir=workdir)
    cp.start()
    try:
        api = Cluster(kubeconfig=cp.kubeconfig, server=cp.server, version="", local=cp).api_client()
        version = client.VersionApi(api).get_code().git_version
        yield Cluster(kubeconfig=cp.kubeconfig, server=cp.server, version=version, local=cp)
    finally:
        cp.stop(remove_data=True)
        if _failed(request.session):
            sys.stderr.write(f"\ncontrol-plane logs kept in {workdir / 'logs'}\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def k8s_api(control_plane: Cluster) -> client.ApiClient:
    return control_plane.api_client()


def apply_manifest(api: client.ApiClient, doc: dict[str, Any]) -> None:
    """Create or replace one object with server-side apply (field manager `runwhen-tests`)."""
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(api)
    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = doc.get("metadata", {}).get("namespace")
    res.server_side_apply(
        body=doc,
        name=doc["metadata"]["name"],
        namespace=ns,
        field_manager="runwhen-tests",
        force_conflicts=True,
    )


def install_crds(api: client.ApiClient, crd_dir: Path, timeout: float = 60.0) -> list[str]:
    names: list[str] = []
    ext = client.ApiextensionsV1Api(api)
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            apply_manifest(api, doc)
            names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established: {conds}")
            time.sleep(0.1)
    return names


@pytest.fixture(scope="session")
def crds_installed(k8s_api: client.ApiClient) -> list[str]:
    names = install_crds(k8s_api, ROOT / "crds")
    if not names:
        pytest.fail("no CRDs found in crds/: run `make crds`")
    return names


@pytest.fixture
def namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test (namespaces never finish terminating without a controller-manager)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _namespaced_resources(api: client.ApiClient) -> list[Any]:
    """Every namespaced resource that can be listed and deleted, core first (discovery order)."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.resource import Resource

    found = DynamicClient(api).resources.search(namespaced=True)
    wanted = [
        r
        for r in found
        if type(r) is Resource and "/" not in r.name and {"list", "delete"} <= set(r.verbs or [])
    ]
    return sorted(wanted, key=lambda r: (r.group != "", r.group))


def delete_namespace_as_its_controller(api: client.ApiClient, name: str, timeout: float = 90.0) -> None:
    """Delete a namespace and do what kube-controller-manager's namespace controller would (this
    control plane has none): mark it Terminating, DELETE every object in it (Secrets before custom
    resources, as discovery orders them), wait until nothing is left, then remove the namespace's
    `kubernetes` finalizer. Raises TimeoutError naming what is left."""
    core = client.CoreV1Api(api)
    core.delete_namespace(name)
    resources = _namespaced_resources(api)
    for resource in resources:
        for item in resource.get(namespace=name).items:
            with contextlib.suppress(client.ApiException):
                resource.delete(name=item.metadata.name, namespace=name)
    deadline = time.monotonic() + timeout
    while True:
        left = [
            f"{resource.name}/{item.metadata.name}"
            for resource in resources
            for item in resource.get(namespace=name).items
        ]
        if not left:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name} still holds {left}")
        time.sleep(0.5)
    ns = core.read_namespace(name)
    ns.spec.finalizers = []
    core.replace_namespace_finalize(name, ns)
    while True:
        try:
            core.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name} not gone after its finalizer was removed")
        time.sleep(0.2)


ServiceAccountKubeconfig = Callable[..., Path]


@pytest.fixture
def sa_kubeconfig(
    control_plane: Cluster, k8s_api: client.ApiClient, tmp_path: Path
) -> ServiceAccountKubeconfig:
    """Return a kubeconfig that authenticates as a ServiceAccount (TokenRequest API).

    `sa_kubeconfig(namespace, name, create=True)` creates the ServiceAccount if needed; bind roles to
    `system:serviceaccount:<namespace>:<name>` to grant it rights. Nothing else is granted.
    """
    core = client.CoreV1Api(k8s_api)

    def make(namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 3600) -> Path:
        if create:
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        token = core.create_namespaced_service_account_token(name, namespace, req).status.token
        kc = json.loads(control_plane.kubeconfig.read_text())
        kc["users"] = [{"name": name, "user": {"token": token}}]
        kc["contexts"][0]["context"]["user"] = name
        kc["contexts"][0]["context"]["namespace"] = namespace
        path = tmp_path / f"kubeconfig-{namespace}-{name}"
        path.write_text(json.dumps(kc))
        path.chmod(0o600)
        return path

    return make


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()
