"""The emulator's state: objects, their validation and wire form, the run lifecycle, persistence.

Everything here is synchronous and in memory; the HTTP layer (``app``) calls into one :class:`Store`.
Records keep timestamps as POSIX seconds and carry a few internal fields; the ``*_view`` functions
produce the camelCase wire objects.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runwhen_operator.emulator.validation import (
    NON_FIELD,
    Field,
    Invalid,
    bool_field,
    dns_label,
    duration,
    enum,
    integer,
    is_dns_label,
    list_of,
    nested,
    number,
    object_field,
    parse_body,
    string,
    string_list,
)

__all__ = [
    "HEALTH_STATUSES",
    "NON_FIELD",
    "RUN_OUTCOMES",
    "RUN_STATUSES",
    "SOURCES",
    "Invalid",
    "NotFound",
    "RunSettings",
    "StateFileError",
    "Store",
    "iso",
    "load_state",
    "parse_datetime",
    "save_state",
]

Record = dict[str, Any]

SOURCES = ("user", "alert", "slack", "workflow", "api")
RUN_OUTCOMES = ("completed", "completed_with_errors", "failed")
RUN_STATUSES = ("queued", "started", "completed", "completed_with_errors", "failed", "canceled")
TERMINAL_STATUSES = frozenset({"completed", "completed_with_errors", "failed", "canceled"})
HEALTH_STATUSES = ("healthy", "degraded", "unhealthy", "unknown")
STATE_FORMAT = 1

_STATUS_MESSAGES = {
    "queued": None,
    "started": None,
    "completed": None,
    "completed_with_errors": "Some tasks of the run reported errors.",
    "failed": "The run failed.",
}


class NotFound(Exception):
    """A 404 answer."""

    def __init__(self, detail: str = "Not found.") -> None:
        super().__init__(detail)
        self.detail = detail


class StateFileError(Exception):
    """The state file cannot be read or is not one the emulator wrote."""


def quantize(ts: float) -> float:
    """Round POSIX seconds to whole microseconds, the precision of the wire timestamps, so that a
    timestamp read back from :func:`iso` compares equal to the stored one."""
    return round(ts * 1_000_000) / 1_000_000


def utc_now() -> float:
    """The current time in POSIX seconds, whole microseconds."""
    return time.time_ns() // 1000 / 1_000_000


def iso(ts: float | None) -> str | None:
    """POSIX seconds -> ``2026-03-01T12:00:00.000000Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(quantize(ts), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime(text: str) -> float:
    """ISO 8601 (``Z``, an offset, or naive meaning UTC) -> POSIX seconds; ValueError if invalid."""
    value = text.strip().upper()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass
class RunSettings:
    """How workflow runs triggered from now on end, and how long each lifecycle step takes."""

    outcome: str = "completed"
    step_seconds: float = 1.0


# --- field definitions --------------------------------------------------------------------------

_TASKS = nested(
    {
        "slx": Field(string()),
        "persona": Field(string()),
        "titles": Field(string_list()),
        "sessionTTL": Field(duration()),
    }
)
_ACTION = nested({"tasks": Field(_TASKS)})
_MATCH = nested({"activityVerbs": Field(string_list()), "slxs": Field(string_list())})
_ACTIVITY = nested(
    {
        "name": Field(string(allow_blank=False), required=True),
        "displayName": Field(string()),
        "description": Field(string()),
        "match": Field(_MATCH),
        "actions": Field(list_of(_ACTION)),
    }
)
_DEFINITION = nested({"fromActivities": Field(list_of(_ACTIVITY))})


def _empty_definition() -> dict[str, Any]:
    return {"fromActivities": []}


def _workspace_fields(*, name_required: bool) -> dict[str, Field]:
    return {
        "name": Field(dns_label(), required=name_required),
        "displayName": Field(string(), default=str),
        "configProvided": Field(object_field(), default=dict),
        "secretsProvided": Field(object_field(), default=dict),
        "enabledLocations": Field(string_list(), default=list),
        "slxGroups": Field(object_field(string_list()), default=dict),
    }


WORKSPACE_CREATE = _workspace_fields(name_required=True)
WORKSPACE_UPDATE = _workspace_fields(name_required=False)
WORKSPACE_READ_ONLY = frozenset({"owner", "createdAt", "updatedAt"})

WORKFLOW_FIELDS = {
    "name": Field(dns_label(), required=True),
    "definition": Field(_DEFINITION, default=_empty_definition),
}
WORKFLOW_READ_ONLY = frozenset({"id", "createdAt", "updatedAt"})

PERSONA_FIELDS = {
    "name": Field(dns_label(), required=True),
    "fullName": Field(string(), default=str),
    "description": Field(string(), default=str),
    "avatarUrl": Field(string(), default=str),
    "filterConfidenceThreshold": Field(number(minimum=0, maximum=1), default=lambda: 0.5),
    "filterIssueSelectionStrategy": Field(string(allow_blank=False), default=lambda: "MOST_SEVERE"),
    "filterCodebundleTaskTags": Field(string_list(), default=list),
    "filterStopWords": Field(string_list(), default=list),
    "filterScope": Field(object_field(), default=dict),
    "searchFilters": Field(object_field(), default=dict),
    "runConfidenceThreshold": Field(number(minimum=0, maximum=1), default=lambda: 0.95),
    "runConfig": Field(object_field(), default=dict),
}
PERSONA_READ_ONLY = frozenset({"id", "createdAt", "updatedAt"})

RUN_FIELDS = {"context": Field(object_field(), default=dict)}

_RUN_REQUEST = nested(
    {
        "id": Field(integer(minimum=1)),
        "slxName": Field(string(allow_blank=False)),
        "runbookName": Field(string(allow_blank=False)),
        "taskTitles": Field(string_list()),
    },
    ignore=frozenset({"createdAt"}),
)
RUN_SESSION_CREATE = {
    "source": Field(enum(SOURCES), required=True),
    "isActive": Field(bool_field(), default=lambda: True),
    "context": Field(object_field(), default=dict),
    "runRequests": Field(list_of(_RUN_REQUEST), default=list),
}
RUN_SESSION_PATCH = {
    "source": Field(enum(SOURCES)),
    "isActive": Field(bool_field()),
    "context": Field(object_field()),
    "runRequests": Field(list_of(_RUN_REQUEST)),
}
RUN_SESSION_READ_ONLY = frozenset({"id", "workspace", "status", "workflowId", "createdAt", "updatedAt"})

ISSUE_PATCH = {
    "title": Field(string(allow_blank=False)),
    "severity": Field(integer(minimum=1, maximum=4)),
    "slxName": Field(string()),
    "closed": Field(bool_field()),
}
ISSUE_READ_ONLY = frozenset({"id", "openSince", "openOccurrenceCount"})

ISSUE_OPEN = {
    "title": Field(string(allow_blank=False), required=True),
    "severity": Field(integer(minimum=1, maximum=4), required=True),
    "slxName": Field(string(), default=str),
    "runSessionId": Field(integer(minimum=1), nullable=True),
    "openOccurrenceCount": Field(integer(minimum=1), default=lambda: 1),
}

_HEALTH_DETAIL = nested(
    {
        "component": Field(string(), required=True),
        "status": Field(string(), required=True),
        "message": Field(string()),
    }
)
HEALTH_FIELDS = {
    "status": Field(enum(HEALTH_STATUSES)),
    "details": Field(list_of(_HEALTH_DETAIL)),
    "metrics": Field(object_field(number())),
    "workspace": Field(bool_field()),
    "sync": Field(bool_field()),
}

RUN_SETTINGS_FIELDS = {
    "outcome": Field(enum(RUN_OUTCOMES)),
    "stepSeconds": Field(number(minimum=0, maximum=3600)),
}


def default_health() -> Record:
    return {
        "status": "healthy",
        "details": [{"component": "runner", "status": "healthy", "message": ""}],
        "metrics": {},
        "workspace": True,
        "sync": True,
    }


# --- wire views ---------------------------------------------------------------------------------


def workspace_view(rec: Record) -> Record:
    return {
        "name": rec["name"],
        "displayName": rec["displayName"],
        "owner": rec["owner"],
        "configProvided": rec["configProvided"],
        "secretsProvided": rec["secretsProvided"],
        "enabledLocations": rec["enabledLocations"],
        "slxGroups": rec["slxGroups"],
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


def workflow_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "name": rec["name"],
        "definition": rec["definition"],
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


def persona_view(rec: Record) -> Record:
    view: Record = {"id": rec["id"]}
    for key in PERSONA_FIELDS:
        view[key] = rec[key]
    view["createdAt"] = iso(rec["createdAt"])
    view["updatedAt"] = iso(rec["updatedAt"])
    return view


def run_request_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "slxName": rec["slxName"],
        "runbookName": rec["runbookName"],
        "taskTitles": rec["taskTitles"],
        "createdAt": iso(rec["createdAt"]),
    }


def run_session_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "workspace": rec["workspace"],
        "source": rec["source"],
        "isActive": rec["isActive"],
        "status": rec["status"],
        "workflowId": rec["workflowId"],
        "context": rec["context"],
        "runRequests": [run_request_view(item) for item in rec["runRequests"]],
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


def issue_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "title": rec["title"],
        "severity": rec["severity"],
        "slxName": rec["slxName"],
        "openSince": iso(rec["openSince"]),
        "openOccurrenceCount": rec["openOccurrenceCount"],
        "closed": rec["closed"],
    }


def run_view(rec: Record) -> Record:
    return {
        "id": rec["id"],
        "workflowId": rec["workflowId"],
        "workflowName": rec["workflowName"],
        "runSessionId": rec["runSessionId"],
        "status": rec["status"],
        "statusMessage": rec["statusMessage"],
        "triggeredBy": rec["triggeredBy"],
        "context": rec["context"],
        "queuedAt": iso(rec["queuedAt"]),
        "startedAt": iso(rec["startedAt"]),
        "completedAt": iso(rec["completedAt"]),
        "failedAt": iso(rec["failedAt"]),
        "canceledAt": iso(rec["canceledAt"]),
        "createdAt": iso(rec["createdAt"]),
        "updatedAt": iso(rec["updatedAt"]),
    }


# --- the store ----------------------------------------------------------------------------------


class Store:
    """Every object the emulator knows. Integer ids are never reused, not even across a reset."""

    def __init__(
        self, *, run_settings: RunSettings | None = None, clock: Callable[[], float] = utc_now
    ) -> None:
        self.clock = clock
        self.default_run_settings = run_settings or RunSettings()
        self.run_settings = copy.copy(self.default_run_settings)
        self.workspaces: dict[str, Record] = {}
        self.workflows: dict[int, Record] = {}
        self.personas: dict[int, Record] = {}
        self.run_sessions: dict[int, Record] = {}
        self.issues: dict[int, Record] = {}
        self.runs: dict[int, Record] = {}
        self.next_ids: dict[str, int] = {
            "workflow": 1,
            "persona": 1,
            "runSession": 1,
            "runRequest": 1,
            "issue": 1,
            "run": 1,
        }
        self._active_runs: set[int] = set()
        self.generation = 0
        """Incremented by every change; the HTTP layer saves the state file when it moves."""

    # --- helpers --------------------------------------------------------------------------------

    def _touch(self) -> None:
        self.generation += 1

    def _next_id(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def reset(self) -> None:
        """Forget every object and restore the start-up run settings; ids keep counting up."""
        self.workspaces.clear()
        self.workflows.clear()
        self.personas.clear()
        self.run_sessions.clear()
        self.issues.clear()
        self.runs.clear()
        self._active_runs.clear()
        self.run_settings = copy.copy(self.default_run_settings)
        self._touch()

    # --- workspaces -----------------------------------------------------------------------------

    def list_workspaces(self) -> list[Record]:
        return list(self.workspaces.values())

    def get_workspace(self, name: str) -> Record:
        rec = self.workspaces.get(name)
        if rec is None:
            raise NotFound("Workspace not found.")
        return rec

    def _free_name(self, name: str) -> str:
        suffix = 2
        while True:
            tail = f"-{suffix}"
            candidate = name[: 63 - len(tail)].rstrip("-") + tail
            if candidate not in self.workspaces and is_dns_label(candidate):
                return candidate
            suffix += 1

    def create_workspace(self, body: Any, *, owner: str, auto_suffix: bool = False) -> Record:
        data = parse_body(body, WORKSPACE_CREATE, read_only=WORKSPACE_READ_ONLY)
        name = data["name"]
        if name in self.workspaces:
            if not auto_suffix:
                raise Invalid({"name": ["workspace with this name already exists."]})
            name = self._free_name(name)
        now = self.clock()
        rec = {**data, "name": name, "owner": owner, "createdAt": now, "updatedAt": now}
        rec["health"] = default_health()
        self.workspaces[name] = rec
        self._touch()
        return rec

    def update_workspace(self, name: str, body: Any, *, partial: bool) -> Record:
        rec = self.get_workspace(name)
        data = parse_body(body, WORKSPACE_UPDATE, read_only=WORKSPACE_READ_ONLY, partial=partial)
        if data.get("name", name) != name:
            raise Invalid({"name": ["The workspace name cannot be changed."]})
        data.pop("name", None)
        rec.update(data)
        rec["updatedAt"] = self.clock()
        self._touch()
        return rec

    def delete_workspace(self, name: str) -> None:
        self.get_workspace(name)
        del self.workspaces[name]
        for table in (self.workflows, self.personas, self.run_sessions, self.issues, self.runs):
            for key in [key for key, rec in table.items() if rec["workspace"] == name]:
                del table[key]
        self._active_runs &= set(self.runs)
        self._touch()

    def set_health(self, name: str, body: Any) -> Record:
        rec = self.get_workspace(name)
        data = parse_body(body, HEALTH_FIELDS, partial=True)
        health = rec["health"]
        if "details" in data:
            data["details"] = [{"message": "", **item} for item in data["details"]]
        health.update(data)
        self._touch()
        return rec

    # --- workflows ------------------------------------------------------------------------------

    def list_workflows(self, workspace: str) -> list[Record]:
        self.get_workspace(workspace)
        return [rec for rec in self.workflows.values() if rec["workspace"] == workspace]

    def get_workflow(self, workspace: str, workflow_id: int) -> Record:
        self.get_workspace(workspace)
        rec = self.workflows.get(workflow_id)
        if rec is None or rec["workspace"] != workspace:
            raise NotFound("Workflow not found.")
        return rec

    def create_workflow(self, workspace: str, body: Any) -> Record:
        self.get_workspace(workspace)
        data = parse_body(body, WORKFLOW_FIELDS, read_only=WORKFLOW_READ_ONLY)
        now = self.clock()
        rec = {
            "id": self._next_id("workflow"),
            "workspace": workspace,
            **data,
            "createdAt": now,
            "updatedAt": now,
            "webhookToken": secrets.token_urlsafe(24),
        }
        self.workflows[rec["id"]] = rec
        self._touch()
        return rec

    def replace_workflow(self, workspace: str, workflow_id: int, body: Any) -> Record:
        rec = self.get_workflow(workspace, workflow_id)
        data = parse_body(body, WORKFLOW_FIELDS, read_only=WORKFLOW_READ_ONLY)
        rec.update(data)
        rec["updatedAt"] = self.clock()
        self._touch()
        return rec

    def delete_workflow(self, workspace: str, workflow_id: int) -> None:
        self.get_workflow(workspace, workflow_id)
        del self.workflows[workflow_id]
        self._touch()

    def workflow_by_webhook_token(self, token: str) -> Record:
        given = token.encode("utf-8", "surrogatepass")
        for rec in self.workflows.values():
            if secrets.compare_digest(rec["webhookToken"].encode(), given):
                return rec
        raise NotFound("Unknown webhook token.")

    # --- workflow runs --------------------------------------------------------------------------

    def trigger_run(self, workspace: str, workflow_id: int, body: Any, *, triggered_by: str) -> Record:
        workflow = self.get_workflow(workspace, workflow_id)
        data = parse_body(body, RUN_FIELDS)
        now = self.clock()
        session = self._new_session(
            workspace,
            source="workflow",
            is_active=True,
            context=data["context"],
            workflow_id=workflow["id"],
            status="queued",
            run_requests=list(self._tasks_of(workflow["definition"])),
            now=now,
        )
        run = {
            "id": self._next_id("run"),
            "workspace": workspace,
            "workflowId": workflow["id"],
            "workflowName": workflow["name"],
            "runSessionId": session["id"],
            "status": "queued",
            "statusMessage": None,
            "triggeredBy": triggered_by,
            "context": data["context"],
            "queuedAt": now,
            "startedAt": None,
            "completedAt": None,
            "failedAt": None,
            "canceledAt": None,
            "createdAt": now,
            "updatedAt": now,
            "outcome": self.run_settings.outcome,
            "stepSeconds": self.run_settings.step_seconds,
        }
        session["runId"] = run["id"]
        self.runs[run["id"]] = run
        self._active_runs.add(run["id"])
        self._touch()
        return run

    @staticmethod
    def _tasks_of(definition: Record) -> Iterable[Record]:
        for activity in definition.get("fromActivities", []):
            for action in activity.get("actions", []):
                tasks = action.get("tasks") or {}
                slx = tasks.get("slx")
                if slx:
                    yield {"slxName": slx, "taskTitles": list(tasks.get("titles", []))}

    def advance(self) -> None:
        """Move every run whose next lifecycle step is due (timestamps are the scheduled times)."""
        if not self._active_runs:
            return
        now = self.clock()
        for run_id in sorted(self._active_runs):
            run = self.runs.get(run_id)
            if run is None:
                self._active_runs.discard(run_id)
                continue
            step = float(run["stepSeconds"])
            if run["status"] == "queued" and now >= run["queuedAt"] + step:
                self._transition(run, "started", run["queuedAt"] + step)
            if run["status"] == "started" and now >= run["queuedAt"] + 2 * step:
                self._transition(run, run["outcome"], run["queuedAt"] + 2 * step)
                self._active_runs.discard(run_id)

    def _transition(self, run: Record, status: str, at: float) -> None:
        at = quantize(at)
        run["status"] = status
        run["statusMessage"] = _STATUS_MESSAGES.get(status)
        run["updatedAt"] = at
        if status == "started":
            run["startedAt"] = at
        elif status == "failed":
            run["failedAt"] = at
        elif status == "canceled":
            run["canceledAt"] = at
        else:
            run["completedAt"] = at
        session = self.run_sessions.get(run["runSessionId"])
        if session is not None:
            session["status"] = status
            session["updatedAt"] = at
            if status in TERMINAL_STATUSES:
                session["isActive"] = False
        self._touch()

    def webhook_token(self, workspace: str, workflow_id: int) -> str:
        return str(self.get_workflow(workspace, workflow_id)["webhookToken"])

    # --- personas -------------------------------------------------------------------------------

    def list_personas(self, workspace: str) -> list[Record]:
        self.get_workspace(workspace)
        return [rec for rec in self.personas.values() if rec["workspace"] == workspace]

    def get_persona(self, workspace: str, persona_id: int) -> Record:
        self.get_workspace(workspace)
        rec = self.personas.get(persona_id)
        if rec is None or rec["workspace"] != workspace:
            raise NotFound("Persona not found.")
        return rec

    def create_persona(self, workspace: str, body: Any) -> Record:
        self.get_workspace(workspace)
        data = parse_body(body, PERSONA_FIELDS, read_only=PERSONA_READ_ONLY)
        now = self.clock()
        rec = {
            "id": self._next_id("persona"),
            "workspace": workspace,
            **data,
            "createdAt": now,
            "updatedAt": now,
        }
        self.personas[rec["id"]] = rec
        self._touch()
        return rec

    def replace_persona(self, workspace: str, persona_id: int, body: Any) -> Record:
        rec = self.get_persona(workspace, persona_id)
        data = parse_body(body, PERSONA_FIELDS, read_only=PERSONA_READ_ONLY)
        rec.update(data)
        rec["updatedAt"] = self.clock()
        self._touch()
        return rec

    def delete_persona(self, workspace: str, persona_id: int) -> None:
        self.get_persona(workspace, persona_id)
        del self.personas[persona_id]
        self._touch()

    # --- run sessions ---------------------------------------------------------------------------

    def _new_session(
        self,
        workspace: str,
        *,
        source: str,
        is_active: bool,
        context: Record,
        workflow_id: int | None,
        status: str | None,
        run_requests: list[Record],
        now: float,
    ) -> Record:
        rec: Record = {
            "id": self._next_id("runSession"),
            "workspace": workspace,
            "source": source,
            "isActive": is_active,
            "status": status,
            "workflowId": workflow_id,
            "context": context,
            "runRequests": [],
            "runId": None,
            "createdAt": now,
            "updatedAt": now,
        }
        self._append_run_requests(rec, run_requests, now)
        self.run_sessions[rec["id"]] = rec
        return rec

    def _append_run_requests(self, session: Record, items: list[Record], now: float) -> None:
        for item in items:
            slx = item["slxName"]
            session["runRequests"].append(
                {
                    "id": self._next_id("runRequest"),
                    "slxName": slx,
                    "runbookName": item.get("runbookName", slx),
                    "taskTitles": list(item.get("taskTitles", [])),
                    "createdAt": now,
                }
            )

    @staticmethod
    def _new_run_requests(session: Record | None, items: list[Record]) -> list[Record]:
        """Items without ``id`` are new run requests; items with one must name an existing one."""
        known = {item["id"] for item in session["runRequests"]} if session else set()
        errors: dict[str, list[str]] = {}
        fresh = []
        for index, item in enumerate(items):
            if "id" in item:
                if item["id"] not in known:
                    errors[f"runRequests.{index}.id"] = ["No run request with this id in the run session."]
                continue
            if "slxName" not in item:
                errors[f"runRequests.{index}.slxName"] = ["This field is required."]
                continue
            fresh.append(item)
        if errors:
            raise Invalid(errors)
        return fresh

    def list_run_sessions(
        self,
        workspace: str,
        *,
        modified_lte: float | None = None,
        runbook_name: str | None = None,
        source: str | None = None,
        workflow_id: int | None = None,
    ) -> list[Record]:
        self.get_workspace(workspace)
        result = []
        for rec in self.run_sessions.values():
            if rec["workspace"] != workspace:
                continue
            if modified_lte is not None and rec["updatedAt"] > modified_lte:
                continue
            if runbook_name is not None and not any(
                item["runbookName"] == runbook_name for item in rec["runRequests"]
            ):
                continue
            if source is not None and rec["source"] != source:
                continue
            if workflow_id is not None and rec["workflowId"] != workflow_id:
                continue
            result.append(rec)
        return result

    def get_run_session(self, workspace: str, session_id: int) -> Record:
        self.get_workspace(workspace)
        rec = self.run_sessions.get(session_id)
        if rec is None or rec["workspace"] != workspace:
            raise NotFound("Run session not found.")
        return rec

    def create_run_session(self, workspace: str, body: Any) -> Record:
        self.get_workspace(workspace)
        data = parse_body(body, RUN_SESSION_CREATE, read_only=RUN_SESSION_READ_ONLY)
        fresh = self._new_run_requests(None, data["runRequests"])
        rec = self._new_session(
            workspace,
            source=data["source"],
            is_active=data["isActive"],
            context=data["context"],
            workflow_id=None,
            status=None,
            run_requests=fresh,
            now=self.clock(),
        )
        self._touch()
        return rec

    def patch_run_session(self, workspace: str, session_id: int, body: Any) -> Record:
        rec = self.get_run_session(workspace, session_id)
        data = parse_body(body, RUN_SESSION_PATCH, read_only=RUN_SESSION_READ_ONLY, partial=True)
        fresh = self._new_run_requests(rec, data.pop("runRequests", []))
        now = self.clock()
        rec.update(data)
        self._append_run_requests(rec, fresh, now)
        rec["updatedAt"] = now
        self._touch()
        return rec

    # --- issues ---------------------------------------------------------------------------------

    def list_issues(
        self,
        workspace: str,
        *,
        closed: bool | None = None,
        severity_lte: int | None = None,
        run_session_id: int | None = None,
    ) -> list[Record]:
        self.get_workspace(workspace)
        result = []
        for rec in self.issues.values():
            if rec["workspace"] != workspace:
                continue
            if run_session_id is not None and rec["runSessionId"] != run_session_id:
                continue
            if closed is not None and rec["closed"] != closed:
                continue
            if severity_lte is not None and rec["severity"] > severity_lte:
                continue
            result.append(rec)
        return result

    def get_issue(self, workspace: str, issue_id: int, *, run_session_id: int | None = None) -> Record:
        self.get_workspace(workspace)
        rec = self.issues.get(issue_id)
        if rec is None or rec["workspace"] != workspace:
            raise NotFound("Issue not found.")
        if run_session_id is not None and rec["runSessionId"] != run_session_id:
            raise NotFound("Issue not found.")
        return rec

    def open_issue(self, workspace: str, body: Any) -> Record:
        self.get_workspace(workspace)
        data = parse_body(body, ISSUE_OPEN)
        session_id = data.get("runSessionId")
        if session_id is not None:
            session = self.run_sessions.get(session_id)
            if session is None or session["workspace"] != workspace:
                raise Invalid({"runSessionId": ["No run session with this id in the workspace."]})
        rec = {
            "id": self._next_id("issue"),
            "workspace": workspace,
            "runSessionId": session_id,
            "title": data["title"],
            "severity": data["severity"],
            "slxName": data["slxName"],
            "openSince": self.clock(),
            "openOccurrenceCount": data["openOccurrenceCount"],
            "closed": False,
            "closedAt": None,
        }
        self.issues[rec["id"]] = rec
        self._touch()
        return rec

    def patch_issue(
        self, workspace: str, issue_id: int, body: Any, *, run_session_id: int | None = None
    ) -> Record:
        rec = self.get_issue(workspace, issue_id, run_session_id=run_session_id)
        data = parse_body(body, ISSUE_PATCH, read_only=ISSUE_READ_ONLY, partial=True)
        self._set_closed(rec, data.pop("closed", rec["closed"]))
        rec.update(data)
        self._touch()
        return rec

    def close_issue(self, workspace: str, issue_id: int) -> Record:
        rec = self.get_issue(workspace, issue_id)
        self._set_closed(rec, True)
        self._touch()
        return rec

    def _set_closed(self, rec: Record, closed: bool) -> None:
        if closed and not rec["closed"]:
            rec["closedAt"] = self.clock()
        elif not closed:
            rec["closedAt"] = None
        rec["closed"] = closed

    # --- run settings ---------------------------------------------------------------------------

    def set_run_settings(self, body: Any) -> RunSettings:
        data = parse_body(body, RUN_SETTINGS_FIELDS, partial=True)
        if "outcome" in data:
            self.run_settings.outcome = data["outcome"]
        if "stepSeconds" in data:
            self.run_settings.step_seconds = data["stepSeconds"]
        self._touch()
        return self.run_settings

    # --- control view and persistence -----------------------------------------------------------

    def state(self) -> Record:
        """Every object for ``GET /_emulator/state`` (wire form plus the owning workspace)."""
        return {
            "workspaces": [
                {**workspace_view(rec), "health": rec["health"]} for rec in self.workspaces.values()
            ],
            "workflows": [
                {**workflow_view(rec), "workspace": rec["workspace"], "webhookToken": rec["webhookToken"]}
                for rec in self.workflows.values()
            ],
            "personas": [
                {**persona_view(rec), "workspace": rec["workspace"]} for rec in self.personas.values()
            ],
            "runSessions": [run_session_view(rec) for rec in self.run_sessions.values()],
            "issues": [
                {
                    **issue_view(rec),
                    "workspace": rec["workspace"],
                    "runSessionId": rec["runSessionId"],
                    "closedAt": iso(rec["closedAt"]),
                }
                for rec in self.issues.values()
            ],
            "runs": [{**run_view(rec), "workspace": rec["workspace"]} for rec in self.runs.values()],
            "runSettings": {
                "outcome": self.run_settings.outcome,
                "stepSeconds": self.run_settings.step_seconds,
            },
        }

    def snapshot(self) -> Record:
        return {
            "format": STATE_FORMAT,
            "nextIds": dict(self.next_ids),
            "runSettings": {
                "outcome": self.run_settings.outcome,
                "stepSeconds": self.run_settings.step_seconds,
            },
            "workspaces": list(self.workspaces.values()),
            "workflows": list(self.workflows.values()),
            "personas": list(self.personas.values()),
            "runSessions": list(self.run_sessions.values()),
            "issues": list(self.issues.values()),
            "runs": list(self.runs.values()),
        }

    def restore(self, data: Any) -> None:
        """Load a :meth:`snapshot`; raises StateFileError if it is not one."""
        try:
            if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
                raise StateFileError("unknown state file format")
            next_ids = {str(k): int(v) for k, v in data["nextIds"].items()}
            workspaces = {str(rec["name"]): dict(rec) for rec in data["workspaces"]}
            tables = {
                key: {int(rec["id"]): dict(rec) for rec in data[key]}
                for key in ("workflows", "personas", "runSessions", "issues", "runs")
            }
            settings = data.get("runSettings") or {}
            run_settings = RunSettings(
                outcome=str(settings.get("outcome", self.default_run_settings.outcome)),
                step_seconds=float(settings.get("stepSeconds", self.default_run_settings.step_seconds)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateFileError(f"malformed state file: {exc!r}") from exc
        self.next_ids.update(next_ids)
        self.workspaces = workspaces
        self.workflows = tables["workflows"]
        self.personas = tables["personas"]
        self.run_sessions = tables["runSessions"]
        self.issues = tables["issues"]
        self.runs = tables["runs"]
        self.run_settings = run_settings
        self._active_runs = {rid for rid, rec in self.runs.items() if rec["status"] not in TERMINAL_STATUSES}


def save_state(path: Path, payload: Record) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (temporary file in the same directory, rename)."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_state(path: Path) -> Record | None:
    """The JSON stored at ``path``, or None if there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StateFileError(f"{path} does not hold a JSON object")
    return data
