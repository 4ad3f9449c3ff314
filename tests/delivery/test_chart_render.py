"""The Helm chart rendered offline: lint, both RBAC modes, security settings, HA, options, schema."""

from __future__ import annotations

import pytest

from tests.delivery import chart
from tests.delivery.chart import (
    ALL_KINDS,
    CRDS,
    EVENTS,
    GROUP,
    LEASE_GROUP,
    NAMESPACE,
    NAMESPACED_KINDS,
    NAMESPACES,
    SECRETS,
    container,
    find,
    kind_rules,
    lease_rules,
    one,
    rule_set,
    triples,
)


@pytest.fixture(scope="module")
def helm():
    return chart.tools().helm


@pytest.fixture(scope="module")
def default(helm):
    return chart.template(helm)


@pytest.fixture(scope="module")
def namespaced(helm):
    return chart.template(helm, {"watchNamespaces": ["team-a", "team-b"]})


@pytest.fixture(scope="module")
def ha(helm):
    return chart.template(helm, {"replicaCount": 2})


def test_lint_strict_is_clean(helm):
    for values in ({}, {"replicaCount": 2}, {"replicaCount": 3, "watchNamespaces": ["a"]}):
        proc = chart.run([helm, "lint", "--strict", chart.CHART, *chart.set_args(values)])
        assert "0 chart(s) failed" in proc.stdout
        assert "[WARNING]" not in proc.stdout, proc.stdout
        assert "[ERROR]" not in proc.stdout, proc.stdout


def test_chart_metadata():
    import yaml

    meta = yaml.safe_load((chart.CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == "0.1.0"
    assert meta["kubeVersion"] == ">=1.27.0-0"


def test_default_install_objects(default):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default)
    assert kinds == [
        ("ClusterRole", "runwhen-operator"),
        ("ClusterRoleBinding", "runwhen-operator"),
        ("Deployment", "runwhen-operator"),
        ("Service", "runwhen-operator-metrics"),
        ("ServiceAccount", "runwhen-operator"),
    ]
    for obj in default:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_pod_meets_the_restricted_profile(default):
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(default)
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "add" not in sc["capabilities"]
    # the only writable path: an emptyDir at /tmp
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp"
    assert "emptyDir" in pod["volumes"][0]
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]["memory"]


def test_probes_use_the_health_port(default):
    c = container(default)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8081, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--health-port=8081" in c["args"]
    assert "--metrics-port=9090" in c["args"]


def test_ports_follow_values(helm):
    objs = chart.template(helm, {"ports": {"health": 18081, "metrics": 19090}})
    c = container(objs)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 18081, "metrics": 19090}
    assert "--health-port=18081" in c["args"]
    assert "--metrics-port=19090" in c["args"]


def test_default_args_and_env(default):
    c = container(default)
    assert c["args"] == [
        "--all-namespaces",
        "--metrics-port=9090",
        "--health-port=8081",
        "--standalone",
        "--log-format=json",
        "--log-level=info",
    ]
    # the operator's own namespace: where its Lease is and where Events about cluster-scoped objects go
    assert c["env"] == [
        {
            "name": "RUNWHEN_OPERATOR_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
    ]
    assert c["image"] == "ghcr.io/runwhen-contrib/runwhen-operator:0.1.0"
    deployment = one(default, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_operator_cli_accepts_the_chart_args(default, namespaced, ha):
    """The arguments the chart passes parse with the operator's own command line."""
    from runwhen_operator import cli

    parser = cli.build_parser()
    for objs in (default, namespaced, ha):
        args = container(objs)["args"]
        try:
            parsed = parser.parse_args(["run", *args])
        except SystemExit as exc:  # argparse reports unknown arguments by exiting
            pytest.fail(f"runwhen-operator run rejects {args}: exit {exc.code}")
        assert parsed.command == "run"


def test_cluster_wide_rbac_is_exact(default):
    role = one(default, "ClusterRole", "runwhen-operator")
    got = rule_set(role["rules"])
    assert got == kind_rules(ALL_KINDS) | SECRETS | EVENTS | CRDS
    # Kopf lists namespaces only when it watches a set of namespaces
    assert not got & NAMESPACES
    binding = one(default, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "runwhen-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "runwhen-operator", "namespace": NAMESPACE}
    ]
    assert not find(default, "Role")
    assert not find(default, "RoleBinding")


def _assert_least_privilege(rules):
    triples_ = rule_set(rules)
    assert all("*" not in t for t in triples_), "wildcards in RBAC rules"
    secrets = {verb for group, resource, verb in triples_ if group == "" and resource == "secrets"}
    assert not secrets & {"list", "watch", "delete", "deletecollection"}, secrets
    assert not {t for t in triples_ if t[0] == GROUP and t[2] == "create"}, (
        "the operator never creates its CRs"
    )
    deletes = {r for g, r, v in triples_ if v == "delete"}
    assert deletes <= {"workflowruns"}, deletes


@pytest.mark.parametrize(
    "values",
    [{}, {"replicaCount": 2}, {"watchNamespaces": ["a", "b"]}, {"watchNamespaces": ["a"], "replicaCount": 3}],
)
def test_no_wildcards_no_secret_listing(helm, values):
    objs = chart.template(helm, values)
    roles = find(objs, "ClusterRole") + find(objs, "Role")
    assert roles
    for role in roles:
        _assert_least_privilege(role["rules"])


def test_namespaced_rbac(namespaced):
    assert "--all-namespaces" not in container(namespaced)["args"]
    assert [a for a in container(namespaced)["args"] if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    # the ClusterRole only covers what is cluster-scoped
    cluster_roles = find(namespaced, "ClusterRole")
    assert [r["metadata"]["name"] for r in cluster_roles] == ["runwhen-operator-cluster"]
    assert (
        rule_set(cluster_roles[0]["rules"]) == kind_rules(["clusterrunwhenconnections"]) | CRDS | NAMESPACES
    )
    binding = one(namespaced, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "runwhen-operator-cluster",
    }
    # one Role + RoleBinding per watched namespace with everything namespaced
    for ns in ("team-a", "team-b"):
        role = one(namespaced, "Role", "runwhen-operator", ns)
        assert rule_set(role["rules"]) == kind_rules(NAMESPACED_KINDS) | SECRETS | EVENTS
        rb = one(namespaced, "RoleBinding", "runwhen-operator", ns)
        assert rb["roleRef"]["kind"] == "Role"
        assert rb["roleRef"]["name"] == "runwhen-operator"
        assert rb["subjects"] == [
            {"kind": "ServiceAccount", "name": "runwhen-operator", "namespace": NAMESPACE}
        ]
    # the operator's namespace: credentials of cluster connections (read only) and events
    own = one(namespaced, "Role", "runwhen-operator-operator", NAMESPACE)
    assert rule_set(own["rules"]) == triples("", ["secrets"], ["get"]) | EVENTS
    # nothing cluster-wide about secrets or events
    for role in cluster_roles:
        assert not {t for t in rule_set(role["rules"]) if t[1] in ("secrets", "events")}


def _lease_holders(objs):
    """(kind, name, namespace) of every role granting anything on coordination.k8s.io."""
    return sorted(
        (r["kind"], r["metadata"]["name"], r["metadata"].get("namespace"))
        for r in find(objs, "ClusterRole") + find(objs, "Role")
        if any(t[0] == LEASE_GROUP for t in rule_set(r["rules"]))
    )


def test_single_replica_is_standalone(default):
    args = container(default)["args"]
    assert "--standalone" in args
    assert not [a for a in args if a.startswith("--peering")]
    assert not _lease_holders(default)
    assert not find(default, "PodDisruptionBudget")


def test_replicas_elect_a_leader_on_a_lease(ha):
    deployment = one(ha, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    args = container(ha)["args"]
    # the Lease is named after the release
    assert "--peering=runwhen-operator" in args
    assert "--standalone" not in args
    assert [e["name"] for e in container(ha)["env"]] == ["RUNWHEN_OPERATOR_NAMESPACE"]
    pdb = one(ha, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # leases: in the release namespace only, and only its own Lease beyond `create`
    assert _lease_holders(ha) == [("Role", "runwhen-operator-leader-election", NAMESPACE)]
    role = one(ha, "Role", "runwhen-operator-leader-election", NAMESPACE)
    assert rule_set(role["rules"]) == lease_rules("runwhen-operator")
    binding = one(ha, "RoleBinding", "runwhen-operator-leader-election", NAMESPACE)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "runwhen-operator-leader-election",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "runwhen-operator", "namespace": NAMESPACE}
    ]
    # the rest of the RBAC is what a single replica gets
    cluster_role = one(ha, "ClusterRole", "runwhen-operator")
    assert rule_set(cluster_role["rules"]) == kind_rules(ALL_KINDS) | SECRETS | EVENTS | CRDS


def test_namespaced_replicas_hold_the_lease_in_the_release_namespace(helm):
    objs = chart.template(helm, {"replicaCount": 2, "watchNamespaces": ["a", "b", NAMESPACE]})
    assert _lease_holders(objs) == [("Role", "runwhen-operator-leader-election", NAMESPACE)]
    assert rule_set(one(objs, "Role", "runwhen-operator-leader-election", NAMESPACE)["rules"]) == (
        lease_rules("runwhen-operator")
    )
    one(objs, "RoleBinding", "runwhen-operator-leader-election", NAMESPACE)
    # the watched namespaces' Roles (the release namespace's too) and the operator's own are unchanged
    for ns in ("a", "b", NAMESPACE):
        assert rule_set(one(objs, "Role", "runwhen-operator", ns)["rules"]) == (
            kind_rules(NAMESPACED_KINDS) | SECRETS | EVENTS
        )
    own = one(objs, "Role", "runwhen-operator-operator", NAMESPACE)
    assert rule_set(own["rules"]) == triples("", ["secrets"], ["get"]) | EVENTS


@pytest.mark.parametrize(
    ("values", "release", "lease"),
    [
        ({"replicaCount": 2}, "ops", "ops-runwhen-operator"),
        ({"replicaCount": 3, "fullnameOverride": "shard-1"}, "runwhen-operator", "shard-1"),
        ({"replicaCount": 2, "watchNamespaces": ["a"]}, "runwhen-operator-b", "runwhen-operator-b"),
    ],
)
def test_each_release_has_its_own_lease(helm, values, release, lease):
    objs = chart.template(helm, values, release=release)
    assert f"--peering={lease}" in container(objs)["args"]
    role = one(objs, "Role", f"{lease}-leader-election", NAMESPACE)
    assert rule_set(role["rules"]) == lease_rules(lease)


KOPF_PEERING = ("kopf.dev", "KopfPeering", "kopfpeering", "POD_ID")


@pytest.mark.parametrize(
    "values",
    [{}, {"replicaCount": 2}, {"replicaCount": 3, "watchNamespaces": ["a", "b"]}],
)
def test_nothing_of_kopf_peering_is_rendered(helm, values):
    proc = chart.run(
        [helm, "template", chart.RELEASE, chart.CHART, "--namespace", NAMESPACE, *chart.set_args(values)]
    )
    for word in KOPF_PEERING:
        assert word not in proc.stdout
    objs = chart.template(helm, values)
    assert not find(objs, "CustomResourceDefinition")
    for role in find(objs, "ClusterRole") + find(objs, "Role"):
        assert not {t for t in rule_set(role["rules"]) if "kopf" in t[0]}


def test_no_kopf_peering_left_in_the_delivery_files():
    files = [p for root in (chart.CHART, chart.ROOT / "deploy") for p in root.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        for word in KOPF_PEERING:
            assert word not in text, f"{word} in {path}"


def test_service_monitor_only_when_enabled(helm, default):
    assert not find(default, "ServiceMonitor")
    objs = chart.template(helm, {"metrics.serviceMonitor.enabled": True})
    monitor = one(objs, "ServiceMonitor")
    service = one(objs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_connection_with_token_creates_a_secret(helm):
    objs = chart.template(
        helm, {"connection": {"create": True, "url": "https://papi.example.com", "token": "t0k"}}
    )
    secret = one(objs, "Secret", "runwhen-operator-credentials", NAMESPACE)
    assert secret["stringData"] == {"token": "t0k"}
    conn = one(objs, "ClusterRunWhenConnection", "default")
    assert conn["apiVersion"] == "platform.runwhen.com/v1alpha1"
    assert "namespace" not in conn["metadata"]
    assert conn["spec"] == {
        "url": "https://papi.example.com",
        "credentialsSecretRef": {"name": "runwhen-operator-credentials", "namespace": NAMESPACE},
    }


def test_connection_with_login_and_options(helm):
    objs = chart.template(
        helm,
        {
            "connection": {
                "create": True,
                "name": "prod",
                "url": "https://papi.example.com",
                "username": "ops",
                "password": "s3cret",
                "rateLimit": {"requestsPerSecond": 5, "burst": 10},
                "timeoutSeconds": 20,
            }
        },
    )
    assert one(objs, "Secret")["stringData"] == {"username": "ops", "password": "s3cret"}
    spec = one(objs, "ClusterRunWhenConnection", "prod")["spec"]
    assert spec["rateLimit"] == {"requestsPerSecond": 5, "burst": 10}
    assert spec["timeoutSeconds"] == 20


def test_connection_with_existing_secret(helm):
    objs = chart.template(
        helm, {"connection": {"create": True, "url": "https://papi.example.com", "existingSecret": "mine"}}
    )
    assert not find(objs, "Secret")
    ref = one(objs, "ClusterRunWhenConnection")["spec"]["credentialsSecretRef"]
    assert ref == {"name": "mine", "namespace": NAMESPACE}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"connection": {"create": True, "token": "x"}}, "connection.url is required"),
        ({"connection": {"create": True, "url": "https://x"}}, "needs connection.existingSecret"),
        (
            {
                "connection": {
                    "create": True,
                    "url": "https://x",
                    "token": "t",
                    "username": "u",
                    "password": "p",
                }
            },
            "not both",
        ),
    ],
)
def test_connection_misconfigurations_fail(helm, values, message):
    assert message in chart.template_fails(helm, values)


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": -1},
        {"replicaCount": "two"},
        {"unknownKey": True},
        {"image": {"repository": "x", "pullPolicy": "Sometimes"}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"logFormat": "xml"},
        {"connection": {"url": "ftp://nope"}},
        {"metrics": {"serviceMonitor": {"enabled": True, "bogus": 1}}},
        {"peering": {"name": "ops"}},  # the Lease is named after the release
    ],
)
def test_schema_rejects_bad_values(helm, values):
    err = chart.template_fails(helm, values)
    assert "schema" in err.lower() or "at '" in err, err


def test_values_file_validates_against_schema():
    import json

    import yaml

    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])


def test_notes_render(helm):
    proc = chart.run([helm, "install", "x", chart.CHART, "--dry-run=client", "-n", NAMESPACE])
    assert "kubectl apply --server-side --force-conflicts -f charts/runwhen-operator/crds/" in proc.stdout
    assert "cluster-wide" in proc.stdout


def test_chart_ships_the_generated_crds():
    """charts/runwhen-operator/crds/ holds the same CRDs as crds/ (Helm installs them first)."""
    generated = sorted(p.name for p in (chart.ROOT / "crds").glob("*.yaml"))
    shipped = sorted(p.name for p in (chart.CHART / "crds").glob("*.yaml"))
    assert generated, "no CRDs in crds/"
    assert shipped == generated
    for name in generated:
        assert (chart.CHART / "crds" / name).read_bytes() == (chart.ROOT / "crds" / name).read_bytes()


def _leaf_keys(values, prefix=""):
    """Keys of values.yaml down to the documented level (maps of free-form settings stay whole)."""
    whole = {"resources", "livenessProbe", "readinessProbe", "connection.rateLimit"}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in whole:
            yield from _leaf_keys(value, f"{path}.")
        else:
            yield path


def test_readme_documents_every_value():
    import yaml

    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    readme = (chart.CHART / "README.md").read_text()
    documented = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")}
    assert set(_leaf_keys(values)) == documented
