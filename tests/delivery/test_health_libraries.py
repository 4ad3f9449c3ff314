"""hack/health-check gives the verdicts of Flux's kstatus and Argo CD's Lua health checks, from their code.

Hand-made objects of an arbitrary custom kind, not the operator's: these tests pin down what the real
libraries (sigs.k8s.io/cli-utils kstatus, Argo CD's util/lua VM through gitops-engine's health package)
answer, so that other tests can rely on the helper.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from tests.support.health import ROOT, Judge, binary_path, ensure_health_check, needs_go

pytestmark = needs_go

HEALTH_LUA = ROOT / "docs" / "argocd" / "health.lua"
# Uses the string library, which Argo CD leaves out of the VM of a resource customization unless
# resource.customizations.useOpenLibs.<group_kind> is true.
STRING_LUA = """
local hs = {}
hs.status = "Healthy"
hs.message = string.lower("READY AT GENERATION ") .. tostring(obj.metadata.generation)
return hs
"""


def widget(
    *conditions: tuple[str, str, str], generation: int = 3, observed: int | None = 3
) -> dict[str, Any]:
    """A Deployment-like custom object: spec, generation, status.observedGeneration and conditions."""
    obj: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default", "generation": generation},
        "spec": {"replicas": 2},
        "status": {
            "conditions": [
                {
                    "type": type_,
                    "status": status,
                    "reason": reason,
                    "message": f"{type_} is {status}",
                    "observedGeneration": generation if observed is None else observed,
                    "lastTransitionTime": "2026-03-01T12:00:00Z",
                }
                for type_, status, reason in conditions
            ]
        },
    }
    if observed is not None:
        obj["status"]["observedGeneration"] = observed
    return obj


READY = ("Ready", "True", "Available")
STALLED = ("Stalled", "True", "InvalidSpec")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(widget(READY), "Current", id="ready-at-current-generation"),
        pytest.param(
            widget(("Ready", "False", "InvalidSpec"), ("Stalled", "True", "InvalidSpec")),
            "Failed",
            id="stalled",
        ),
        pytest.param(
            widget(("Ready", "False", "Creating"), ("Reconciling", "True", "Creating")),
            "InProgress",
            id="reconciling",
        ),
        pytest.param(widget(READY, generation=4, observed=3), "InProgress", id="generation-not-observed"),
    ],
)
def test_kstatus(health_judge: Judge, obj: dict[str, Any], expected: str) -> None:
    (verdict,) = health_judge([obj], None)
    assert verdict["kstatus"]["status"] == expected, verdict
    assert verdict["kstatus"]["error"] == ""


def test_kstatus_terminating_and_argocd_pending_deletion(health_judge: Judge) -> None:
    obj = widget(READY)
    obj["metadata"]["deletionTimestamp"] = "2026-03-01T12:05:00Z"
    obj["metadata"]["finalizers"] = ["example.com/finalizer"]
    (verdict,) = health_judge([obj], HEALTH_LUA.read_text())
    assert verdict["kstatus"] == {
        "status": "Terminating",
        "message": "Resource scheduled for deletion",
        "error": "",
    }
    # gitops-engine answers for a deleted object before any health script runs.
    assert verdict["argocd"] == {"status": "Progressing", "message": "Pending deletion", "error": ""}


def test_kstatus_message_comes_from_the_condition(health_judge: Judge) -> None:
    (verdict,) = health_judge([widget(("Stalled", "True", "InvalidSpec"))], None)
    assert verdict["kstatus"]["message"] == "Stalled is True"


def test_project_script_in_argocd_restricted_vm(health_judge: Judge) -> None:
    """docs/argocd/health.lua as a resource customization with useOpenLibs: false (Argo CD's default)."""
    healthy = widget(READY, ("Synced", "True", "Success"))
    degraded = widget(
        ("Ready", "False", "InvalidSpec"),
        ("Synced", "False", "InvalidSpec"),
        ("Stalled", "True", "InvalidSpec"),
    )
    paused = copy.deepcopy(healthy)
    paused["metadata"]["annotations"] = {"platform.runwhen.com/paused": "true"}
    verdicts = health_judge([healthy, degraded, paused], HEALTH_LUA.read_text(), use_open_libs=False)
    assert [v["argocd"]["status"] for v in verdicts] == ["Healthy", "Degraded", "Suspended"], verdicts
    assert [v["argocd"]["error"] for v in verdicts] == ["", "", ""]
    assert "InvalidSpec" in verdicts[1]["argocd"]["message"]


def test_string_library_needs_open_libs(health_judge: Judge) -> None:
    obj = widget(READY)
    (restricted,) = health_judge([obj], STRING_LUA, use_open_libs=False)
    assert restricted["argocd"]["status"] == "Unknown"
    assert "lower" in restricted["argocd"]["error"], restricted
    assert restricted["argocd"]["message"] != ""

    (open_libs,) = health_judge([obj], STRING_LUA, use_open_libs=True)
    assert open_libs["argocd"] == {"status": "Healthy", "message": "ready at generation 3", "error": ""}


def test_one_bad_line_does_not_stop_the_batch(health_judge: Judge) -> None:
    lines = ["this is not JSON", '{"object": 7}', json.dumps({"object": widget(READY)})]
    stdin = "\n".join(lines) + "\n"
    binary = str(ensure_health_check())
    result = subprocess.run([binary], input=stdin, capture_output=True, text=True, check=True)
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [bool(v.get("error")) for v in verdicts] == [True, True, False], verdicts
    assert verdicts[2]["kstatus"]["status"] == "Current"
    assert binary_path().name.startswith("health-check-v3.3.")
