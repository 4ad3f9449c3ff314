"""The GitHub workflows: well-formed, and doing what docs/install.md and the e2e tests rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.delivery import chart

WORKFLOWS = chart.ROOT / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True
    doc["on"] = doc.pop(True, doc.get("on"))
    return dict(doc)


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = doc["jobs"].values()
    return list(job["steps"])


def _uses(steps: list[dict[str, Any]]) -> list[str]:
    return [s["uses"].split("@")[0] for s in steps if "uses" in s]


def _runs(steps: list[dict[str, Any]]) -> str:
    return "\n".join(s.get("run", "") for s in steps)


def test_ci_runs_make_test_with_go_and_python():
    doc = _load("ci.yaml")
    assert {"push", "pull_request"} <= set(doc["on"])
    assert doc["permissions"] == {"contents": "read"}
    (job,) = doc["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    steps = _steps(doc)
    uses = _uses(steps)
    assert {"actions/checkout", "actions/setup-python", "actions/setup-go", "actions/cache"} <= set(uses)
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    assert "make test" in _runs(steps).splitlines()


def test_e2e_builds_both_images_and_runs_the_e2e_suite():
    doc = _load("e2e.yaml")
    steps = _steps(doc)
    uses = _uses(steps)
    assert "helm/kind-action" in uses
    builds = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action")]
    assert sorted(s["with"]["target"] for s in builds) == ["emulator", "operator"]
    assert all(s["with"]["load"] is True for s in builds)
    runs = _runs(steps)
    assert runs.count("kind load docker-image") == 2
    assert "helm install runwhen-operator charts/runwhen-operator" in runs
    assert "tests/e2e/emulator.yaml" in runs
    assert "connection.url=http://runwhen-emulator.runwhen-system.svc:8080" in runs
    e2e = next(s for s in steps if "pytest tests/e2e" in s.get("run", ""))
    assert e2e["env"]["RUNWHEN_E2E"] == "1"


def test_e2e_files_exist():
    for path in ("tests/e2e/emulator.yaml", "tests/e2e/test_kind.py", "charts/runwhen-operator/Chart.yaml"):
        assert (chart.ROOT / path).is_file(), path
    emulator = list(yaml.safe_load_all((chart.ROOT / "tests/e2e/emulator.yaml").read_text()))
    deployment = next(d for d in emulator if d["kind"] == "Deployment")
    service = next(d for d in emulator if d["kind"] == "Service")
    assert deployment["metadata"]["namespace"] == service["metadata"]["namespace"] == "runwhen-system"
    assert service["metadata"]["name"] == "runwhen-emulator"
    assert service["spec"]["ports"][0]["port"] == 8080
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "runwhen-emulator:e2e"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_e2e_suite_skips_without_the_flag():
    text = Path(chart.ROOT / "tests/e2e/test_kind.py").read_text()
    assert 'os.environ.get("RUNWHEN_E2E") != "1"' in text
