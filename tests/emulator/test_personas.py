"""Personas: defaults, thresholds, PUT as full replace, duplicates, validation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

DEFAULTS = {
    "fullName": "",
    "description": "",
    "avatarUrl": "",
    "filterConfidenceThreshold": 0.5,
    "filterIssueSelectionStrategy": "MOST_SEVERE",
    "filterCodebundleTaskTags": [],
    "filterStopWords": [],
    "filterScope": {},
    "searchFilters": {},
    "runConfidenceThreshold": 0.95,
    "runConfig": {},
}


def test_defaults(api: httpx.Client, workspace: str) -> None:
    created = api.post(f"workspaces/{workspace}/personas/", json={"name": "edgar"})
    assert created.status_code == 201
    body = created.json()
    assert {key: body[key] for key in DEFAULTS} == DEFAULTS
    assert set(body) == {"id", "name", "createdAt", "updatedAt", *DEFAULTS}


def test_put_is_a_full_replace(api: httpx.Client, workspace: str) -> None:
    base = f"workspaces/{workspace}/personas/"
    persona = api.post(
        base,
        json={
            "name": "edgar",
            "fullName": "Eager Edgar",
            "filterConfidenceThreshold": 0.7,
            "filterStopWords": ["x"],
        },
    ).json()
    assert persona["filterConfidenceThreshold"] == 0.7
    replaced = api.put(f"{base}{persona['id']}", json={"name": "edgar", "runConfidenceThreshold": 1}).json()
    assert replaced["fullName"] == ""
    assert replaced["filterConfidenceThreshold"] == 0.5
    assert replaced["filterStopWords"] == []
    assert replaced["runConfidenceThreshold"] == 1
    assert api.get(f"{base}{persona['id']}").json() == replaced
    assert api.delete(f"{base}{persona['id']}").status_code == 204
    assert api.get(base).json()["count"] == 0


def test_names_are_not_unique(api: httpx.Client, workspace: str) -> None:
    for _ in range(2):
        assert api.post(f"workspaces/{workspace}/personas/", json={"name": "same"}).status_code == 201
    assert api.get(f"workspaces/{workspace}/personas/").json()["count"] == 2


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"filterConfidenceThreshold": 1.5}, "filterConfidenceThreshold"),
        ({"filterConfidenceThreshold": -0.1}, "filterConfidenceThreshold"),
        ({"runConfidenceThreshold": 2}, "runConfidenceThreshold"),
        ({"runConfidenceThreshold": "0.5"}, "runConfidenceThreshold"),
        ({"runConfidenceThreshold": True}, "runConfidenceThreshold"),
        ({"filterIssueSelectionStrategy": ""}, "filterIssueSelectionStrategy"),
        ({"filterStopWords": "the"}, "filterStopWords"),
        ({"runConfig": "x"}, "runConfig"),
        ({"temperature": 0.1}, "temperature"),
        ({"name": "Edgar"}, "name"),
        ({"fullName": None}, "fullName"),
    ],
)
def test_validation(api: httpx.Client, workspace: str, extra: dict[str, Any], field: str) -> None:
    response = api.post(f"workspaces/{workspace}/personas/", json={"name": "edgar", **extra})
    assert response.status_code == 400
    assert field in response.json()
    assert api.get(f"workspaces/{workspace}/personas/").json()["count"] == 0


def test_thresholds_at_the_bounds(api: httpx.Client, workspace: str) -> None:
    body = {"name": "p", "filterConfidenceThreshold": 0, "runConfidenceThreshold": 1.0}
    created = api.post(f"workspaces/{workspace}/personas/", json=body)
    assert created.status_code == 201
    assert created.json()["filterConfidenceThreshold"] == 0


def test_unknown_persona_is_404(api: httpx.Client, workspace: str) -> None:
    assert api.get(f"workspaces/{workspace}/personas/777").status_code == 404
    assert api.put(f"workspaces/{workspace}/personas/777", json={"name": "p"}).status_code == 404
    assert api.delete(f"workspaces/{workspace}/personas/777").status_code == 404
