"""The emulator's state: objects in one internal record shape, the run lifecycles, persistence.

Everything here is synchronous and in memory; the HTTP layer calls into one :class:`Store`. The store
takes data that the dialect layer (``documented``, ``platform``) has already validated and translated
into the internal shape, and the dialects render records as their wire views. Records keep
timestamps as POSIX seconds.

Internal shapes (shared by both dialects):

- workspace: ``id``, ``name``, ``alias``, ``description``, ``owner`` (user name), ``configProvided``
  (list of objects, ``{"name", "value"}`` for the documented dialect's map), ``secretsProvided``
  (object), ``enabledLocations``, ``slxGroups`` (list of objects, ``{"name", "slxs"}`` for the
  documented dialect's map), ``scrubberConfig``, ``health`` (``status``, ``details``, ``metrics``,
  ``workspace``, ``sync``, ``indexHealth``), ``runners`` (``name``, ``value``, ``health``,
  ``lastHeartbeat``), ``runnerTokens`` and ``uploadTokens`` (the last token handed out per location),
  ``createdAt``, ``updatedAt``.
- workflow: ``id``, ``workspace`` (name), ``name`` (the short name), ``definition``, ``webhookToken``,
  ``tokenRetrieved``, ``deletedAt``, ``createdAt``, ``updatedAt``.
- persona: ``id``, ``workspace``, ``name`` (short name), the persona fields, ``deletedAt``, timestamps.
- run session: ``id``, ``workspace``, ``name``, ``source``, ``isActive``, ``activeUntil``, ``escalated``,
  ``notes``, ``personaName``, ``status`` and ``workflowId`` (workflow runs), ``context``,
  ``runRequests``, ``runId``, timestamps. A run request: ``id``, ``slxName``, ``runbookName``,
  ``taskTitles`` (list or None), ``memo``, ``createdAt`` and, when it has a lifecycle (``lifecycle``),
  ``stepSeconds``, ``outcome``, ``requestTime``, ``responseTime``, ``status``, ``passedTitles``,
  ``failedTitles``, ``skippedTitles``.
- issue: ``id``, ``workspace``, ``runSessionId``, ``title``, ``taskTitle``, ``severity`` (may be None),
  ``slxName``, ``openSince``, ``openOccurrenceCount``, ``closed``, ``closedAt``, ``modifiedAt``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runwhen_operator.emulator.validation import NON_FIELD, Invalid, is_dns_label

__all__ = [
    "HEALTH_STATUSES",
    "NON_FIELD",
    "RUN_OUTCOMES",
    "RUN_STATUSES",
    "SESSION_TTL_SECONDS",
    "Conflict",
    "Invalid",
    "NotFound",
    "Record",
    "RunSettings",
    "StateFileError",
    "Store",
    "iso",
    "load_state",
    "parse_datetime",
    "save_state",
]

Record = dict[str, Any]

RUN_OUTCOMES = ("completed", "completed_with_errors", "failed")
RUN_STATUSES = ("queued", "started", "completed", "completed_with_errors", "failed", "canceled")
TERMINAL_STATUSES = frozenset({"completed", "completed_with_errors", "failed", "canceled"})
HEALTH_STATUSES = ("healthy", "degraded", "unhealthy", "unknown")
SESSION_TTL_SECONDS = 3600.0
"""How long a run session created through the platform dialect stays active without a deactivate."""
STATE_FORMAT = 1

_STATUS_MESSAGES = {
    "queued": None,
    "started": None,
    "completed": None,
    "completed_with_errors": "Some tasks of the run reported errors.",
    "failed": "The run failed.",
}


class NotFound(Exception):
    """A 404 answer about one object: ``kind`` (``"workspace"``, ``"workflow"``, ...) and its ``key``.

    Each dialect words the message itself; ``detail`` is the documented dialect's wording."""

    def __init__(self, kind: str = "", key: object = None, detail: str | None = None) -> None:
        self.kind = kind
        self.key = key
        self.detail = detail or (f"{kind.capitalize()} not found." if kind else "Not found.")
        super().__init__(self.detail)


class Conflict(Exception):
    """A 409 answer."""

    def __init__(self, detail: str) -> None:
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
    """How runs started from now on end, and how long each lifecycle step takes."""

    outcome: str = "completed"
    step_seconds: float = 1.0


def default_health(now: float) -> Record:
    return {
        "status": "healthy",
        "details": [{"component": "runner", "status": "healthy", "message": ""}],
        "metrics": {},
        "workspace": True,
        "sync": True,
        "indexHealth": {"status": "ok", "indexedResources": 0, "lastIndexedAt": iso(now)},
    }


PERSONA_DEFAULTS: dict[str, Callable[[], Any]] = {
    "fullName": lambda: None,
    "description": lambda: None,
    "avatarUrl": lambda: None,
    "filterConfidenceThreshold": lambda: 0.5,
    "filterIssueSelectionStrategy": lambda: "MOST_SEVERE",
    "filterCodebundleTaskTags": list,
    "filterStopWords": list,
    "filterScope": lambda: None,
    "searchFilters": dict,
    "runConfidenceThreshold": lambda: 0.95,
    "runConfig": dict,
}
"""Every persona field but the name, with the value a full upsert gives it when it is omitted."""


def _titles_of(request: Record) -> list[str]:
    titles = request.get("taskTitles")
    if titles:
        return [str(title) for title in titles]
    return [short_name(str(request["slxName"]))]


def short_name(full: str) -> str:
    """``ws--slx`` -> ``slx`` (a name without ``--`` is already short)."""
    return full.split("--", 1)[1] if "--" in full else full


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
        self.reserved_names: list[str] = []
        self.next_ids: dict[str, int] = {
            "workspace": 1,
            "workflow": 1,
            "persona": 1,
            "runSession": 1,
            "runRequest": 1,
            "issue": 1,
            "run": 1,
        }
        self._active_runs: set[int] = set()
        self._moving_sessions: set[int] = set()
        self.generation = 0
        """Incremented by every change; the HTTP layer saves the state file when it moves."""

    # --- helpers --------------------------------------------------------------------------------

    def _touch(self) -> None:
        self.generation += 1

    def _next_id(self, kind: str) -> int:
        value = self.next_ids.get(kind, 1)
        self.next_ids[kind] = value + 1
        return value

    def reset(self) -> None:
        """Forget every object and reserved name, restore the start-up run settings; ids count on."""
        self.workspaces.clear()
        self.workflows.clear()
        self.personas.clear()
        self.run_sessions.clear()
        self.issues.clear()
        self.runs.clear()
        self.reserved_names = []
        self._active_runs.clear()
        self._moving_sessions.clear()
        self.run_settings = copy.copy(self.default_run_settings)
        self._touch()

    # --- workspaces -----------------------------------------------------------------------------

    def list_workspaces(self) -> list[Record]:
        return list(self.workspaces.values())

    def get_workspace(self, name: str) -> Record:
        rec = self.workspaces.get(name)
        if rec is None:
            raise NotFound("workspace", name)
        return rec

    def workspace_by_id(self, workspace_id: int) -> Record | None:
        return next((rec for rec in self.workspaces.values() if rec["id"] == workspace_id), None)

    def name_taken(self, name: str) -> bool:
        return name in self.workspaces or name in self.reserved_names

    def _free_name(self, name: str) -> str:
        suffix = 2
        while True:
            tail = f"-{suffix}"
            candidate = name[: 63 - len(tail)].rstrip("-") + tail
            if not self.name_taken(candidate) and is_dns_label(candidate):
                return candidate
            suffix += 1

    def create_workspace(self, data: Record, *, owner: str, auto_suffix: bool) -> tuple[Record, str | None]:
        """A new workspace from validated internal fields (``name`` and any of the others).

        A taken name (existing or reserved) is ``Invalid`` unless ``auto_suffix``: then the workspace
        gets ``name-2``, ``name-3``, ...; the second value is the name asked for when it was renamed."""
        name = data["name"]
        renamed_from = None
        if self.name_taken(name):
            if not auto_suffix:
                raise Invalid({"name": ["workspace with this name already exists."]})
            renamed_from, name = name, self._free_name(name)
        now = self.clock()
        rec: Record = {
            "id": self._next_id("workspace"),
            "name": name,
            "alias": data.get("alias", ""),
            "description": data.get("description", ""),
            "owner": owner,
            "configProvided": data.get("configProvided", []),
            "secretsProvided": data.get("secretsProvided", {}),
            "enabledLocations": data.get("enabledLocations", []),
            "slxGroups": data.get("slxGroups", []),
            "scrubberConfig": data.get("scrubberConfig"),
            "health": default_health(now),
            "runners": [],
            "runnerTokens": {},
            "uploadTokens": {},
            "createdAt": now,
            "updatedAt": now,
        }
        self.workspaces[name] = rec
        self._touch()
        return rec, renamed_from

    def update_workspace(self, name: str, changes: Record) -> Record:
        """Apply validated internal fields (never the name)."""
        rec = self.get_workspace(name)
        rec.update(changes)
        rec["updatedAt"] = self.clock()
        self._touch()
        return rec

    def delete_workspace(self, name: str) -> dict[str, int]:
        """Delete a workspace and everything in it; returns how many objects of each kind went."""
        self.get_workspace(name)
        del self.workspaces[name]
        counts: dict[str, int] = {}
        tables = {
            "workflows": self.workflows,
            "personas": self.personas,
            "runSessions": self.run_sessions,
            "issues": self.issues,
            "runs": self.runs,
        }
        for kind, table in tables.items():
            doomed = [key for key, rec in table.items() if rec["workspace"] == name]
            counts[kind] = sum(1 for key in doomed if table[key].get("deletedAt") is None)
            for key in doomed:
                del table[key]
        self._active_runs &= set(self.runs)
        self._moving_sessions &= set(self.run_sessions)
        self._touch()
        return counts

    def set_health(self, name: str, data: Record) -> Record:
        rec = self.get_workspace(name)
        health = rec["health"]
        if "details" in data:
            data["details"] = [{"message": "", **item} for item in data["details"]]
        if "indexHealth" in data:
            data["indexHealth"] = {**health.get("indexHealth", {}), **data["indexHealth"]}
        health.update(data)
        self._touch()
        return rec

    def set_runners(self, name: str, runners: list[Record]) -> Record:
        rec = self.get_workspace(name)
        rec["runners"] = runners
        self._touch()
        return rec

    def heartbeat(self, name: str, runner: str, health: str, value: str | None = None) -> Record:
        """A runner named ``runner`` reports to workspace ``name`` now: registered on its first
        report (its id a UUID derived from workspace and name, as the server derives one), its
        health and heartbeat updated on every later one."""
        rec = self.get_workspace(name)
        found = next((r for r in rec["runners"] if r["name"] == runner), None)
        if found is None:
            ident = value or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}--{runner}"))
            found = {"name": runner, "value": ident}
            rec["runners"].append(found)
        elif value:
            found["value"] = value
        found["health"] = health
        found["lastHeartbeat"] = self.clock()
        self._touch()
        return found

    def delete_runner(self, name: str, runner_id: str) -> Record:
        rec = self.get_workspace(name)
        found: Record | None = next((r for r in rec["runners"] if r["value"] == runner_id), None)
        if found is None:
            raise NotFound("runner", runner_id)
        rec["runners"].remove(found)
        self._touch()
        return found

    def issue_token(self, name: str, kind: str, location: str | None) -> str:
        """A new token for a location's runner (``kind`` ``runnerTokens``) or workspace builder
        (``uploadTokens``), remembered as the location's latest."""
        rec = self.get_workspace(name)
        token = secrets.token_urlsafe(32)
        rec.setdefault(kind, {})[location or ""] = token
        self._touch()
        return token

    def set_reserved_names(self, names: list[str]) -> list[str]:
        self.reserved_names = list(dict.fromkeys(names))
        self._touch()
        return self.reserved_names

    # --- workflows ------------------------------------------------------------------------------

    def list_workflows(self, workspace: str) -> list[Record]:
        self.get_workspace(workspace)
        return [
            rec
            for rec in self.workflows.values()
            if rec["workspace"] == workspace and rec.get("deletedAt") is None
        ]

    def get_workflow(self, workspace: str, workflow_id: int) -> Record:
        self.get_workspace(workspace)
        rec = self.workflows.get(workflow_id)
        if rec is None or rec["workspace"] != workspace or rec.get("deletedAt") is not None:
            raise NotFound("workflow", workflow_id)
        return rec

    def find_workflow(self, workspace: str, name: str) -> Record:
        """The live workflow called ``name`` (its short name) in ``workspace``."""
        for rec in self.list_workflows(workspace):
            if rec["name"] == name:
                return rec
        raise NotFound("workflow", name)

    def create_workflow(self, workspace: str, name: str, definition: Record) -> Record:
        self.get_workspace(workspace)
        now = self.clock()
        rec: Record = {
            "id": self._next_id("workflow"),
            "workspace": workspace,
            "name": name,
            "definition": definition,
            "createdAt": now,
            "updatedAt": now,
            "webhookToken": secrets.token_urlsafe(24),
            "tokenRetrieved": False,
            "deletedAt": None,
        }
        self.workflows[rec["id"]] = rec
        self._touch()
        return rec

    def replace_workflow(self, workspace: str, workflow_id: int, name: str, definition: Record) -> Record:
        rec = self.get_workflow(workspace, workflow_id)
        rec["name"] = name
        rec["definition"] = definition
        rec["updatedAt"] = self.clock()
        self._touch()
        return rec

    def upsert_workflow(self, workspace: str, name: str, definition: Record) -> tuple[Record, str]:
        """Create or replace the workflow ``name``: ``(record, "created" | "updated" | "unchanged")``."""
        try:
            rec = self.find_workflow(workspace, name)
        except NotFound as exc:
            if exc.kind != "workflow":
                raise
            return self.create_workflow(workspace, name, definition), "created"
        if rec["definition"] == definition:
            return rec, "unchanged"
        return self.replace_workflow(workspace, rec["id"], name, definition), "updated"

    def delete_workflow(self, workspace: str, workflow_id: int, *, soft: bool = False) -> Record:
        """Delete a workflow; ``soft`` keeps the record (``deletedAt`` set) where nothing finds it."""
        rec = self.get_workflow(workspace, workflow_id)
        if soft:
            rec["deletedAt"] = self.clock()
        else:
            del self.workflows[workflow_id]
        self._touch()
        return rec

    def webhook_token(self, workspace: str, workflow_id: int) -> str:
        return str(self.get_workflow(workspace, workflow_id)["webhookToken"])

    def take_webhook_token(self, workspace: str, workflow_id: int) -> str:
        """The webhook token, once: a second read before a rotation is a Conflict."""
        rec = self.get_workflow(workspace, workflow_id)
        if rec.get("tokenRetrieved"):
            raise Conflict("The webhook token was already retrieved; rotate it to read a new one")
        rec["tokenRetrieved"] = True
        self._touch()
        return str(rec["webhookToken"])

    def rotate_webhook_token(self, workspace: str, workflow_id: int) -> Record:
        rec = self.get_workflow(workspace, workflow_id)
        rec["webhookToken"] = secrets.token_urlsafe(24)
        rec["tokenRetrieved"] = False
        self._touch()
        return rec

    def workflow_by_webhook_token(self, token: str) -> Record:
        given = token.encode("utf-8", "surrogatepass")
        for rec in self.workflows.values():
            if rec.get("deletedAt") is None and secrets.compare_digest(rec["webhookToken"].encode(), given):
                return rec
        raise NotFound(detail="Unknown webhook token.")

    # --- workflow runs --------------------------------------------------------------------------

    def trigger_run(self, workspace: str, workflow_id: int, context: Record, *, triggered_by: str) -> Record:
        workflow = self.get_workflow(workspace, workflow_id)
        now = self.clock()
        session = self._new_session(
            workspace,
            {
                "source": "workflow",
                "isActive": True,
                "context": context,
                "workflowId": workflow["id"],
                "status": "queued",
                "runRequests": list(self._tasks_of(workflow["definition"])),
            },
            now=now,
            lifecycle=False,
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
            "context": context,
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
    def _tasks_of(definition: Any) -> Iterable[Record]:
        """The run requests of a workflow definition (``fromActivities[].actions[].tasks``)."""
        activities = definition.get("fromActivities") if isinstance(definition, dict) else None
        for activity in activities if isinstance(activities, list) else []:
            actions = activity.get("actions") if isinstance(activity, dict) else None
            for action in actions if isinstance(actions, list) else []:
                tasks = action.get("tasks") if isinstance(action, dict) else None
                slx = tasks.get("slx") if isinstance(tasks, dict) else None
                if isinstance(slx, str) and slx:
                    titles = tasks.get("titles") if isinstance(tasks, dict) else None
                    yield {"slxName": slx, "taskTitles": list(titles) if isinstance(titles, list) else []}

    def advance(self) -> None:
        """Move every run, run request and session whose next lifecycle step is due (timestamps are
        the scheduled times, so nothing depends on when the emulator is asked)."""
        if not self._active_runs and not self._moving_sessions:
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
        for session_id in sorted(self._moving_sessions):
            session = self.run_sessions.get(session_id)
            if session is None or not self._advance_session(session, now):
                self._moving_sessions.discard(session_id)

    def _advance_session(self, session: Record, now: float) -> bool:
        """Move the session's run requests and its TTL; False once nothing in it can move any more."""
        moving = False
        for request in session["runRequests"]:
            if not request.get("lifecycle") or request["responseTime"] is not None:
                continue
            step = float(request["stepSeconds"])
            dispatched, done = request["createdAt"] + step, request["createdAt"] + 2 * step
            if request["requestTime"] is None and now >= dispatched:
                request["requestTime"] = quantize(dispatched)
                request["status"] = "running"
                session["updatedAt"] = max(session["updatedAt"], quantize(dispatched))
                self._touch()
            if request["requestTime"] is not None and now >= done:
                self._finish_request(request, quantize(done))
                session["updatedAt"] = max(session["updatedAt"], quantize(done))
                self._touch()
            if request["responseTime"] is None:
                moving = True
        until = session.get("activeUntil")
        if session["isActive"] and until is not None:
            if now >= until:
                session["isActive"] = False
                session["updatedAt"] = max(session["updatedAt"], quantize(until))
                self._touch()
            else:
                moving = True
        return moving

    @staticmethod
    def _finish_request(request: Record, at: float) -> None:
        titles = _titles_of(request)
        outcome = request["outcome"]
        if outcome == "completed":
            passed, failed = titles, []
        elif outcome == "completed_with_errors":
            passed, failed = titles[:-1], titles[-1:]
        else:
            passed, failed = [], titles
        request["passedTitles"] = passed
        request["failedTitles"] = failed
        request["skippedTitles"] = []
        request["status"] = "failed" if outcome == "failed" else "completed"
        request["responseTime"] = at

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

    # --- personas -------------------------------------------------------------------------------

    def list_personas(self, workspace: str) -> list[Record]:
        self.get_workspace(workspace)
        return [
            rec
            for rec in self.personas.values()
            if rec["workspace"] == workspace and rec.get("deletedAt") is None
        ]

    def get_persona(self, workspace: str, persona_id: int) -> Record:
        self.get_workspace(workspace)
        rec = self.personas.get(persona_id)
        if rec is None or rec["workspace"] != workspace or rec.get("deletedAt") is not None:
            raise NotFound("persona", persona_id)
        return rec

    def find_persona(self, workspace: str, name: str) -> Record:
        for rec in self.list_personas(workspace):
            if rec["name"] == name:
                return rec
        raise NotFound("persona", name)

    def create_persona(self, workspace: str, name: str, fields: Record) -> Record:
        """A new persona; ``fields`` holds every key of :data:`PERSONA_DEFAULTS`."""
        self.get_workspace(workspace)
        now = self.clock()
        rec: Record = {
            "id": self._next_id("persona"),
            "workspace": workspace,
            "name": name,
            **fields,
            "deletedAt": None,
            "createdAt": now,
            "updatedAt": now,
        }
        self.personas[rec["id"]] = rec
        self._touch()
        return rec

    def replace_persona(self, workspace: str, persona_id: int, name: str, fields: Record) -> Record:
        rec = self.get_persona(workspace, persona_id)
        rec["name"] = name
        rec.update(fields)
        rec["updatedAt"] = self.clock()
        self._touch()
        return rec

    def upsert_persona(self, workspace: str, name: str, fields: Record) -> tuple[Record, str]:
        """Create or fully replace the persona ``name``: ``(record, "created"|"updated"|"unchanged")``."""
        try:
            rec = self.find_persona(workspace, name)
        except NotFound as exc:
            if exc.kind != "persona":
                raise
            return self.create_persona(workspace, name, fields), "created"
        if all(rec.get(key) == value for key, value in fields.items()):
            return rec, "unchanged"
        return self.replace_persona(workspace, rec["id"], name, fields), "updated"

    def delete_persona(self, workspace: str, persona_id: int, *, soft: bool = False) -> Record:
        rec = self.get_persona(workspace, persona_id)
        if soft:
            rec["deletedAt"] = self.clock()
        else:
            del self.personas[persona_id]
        self._touch()
        return rec

    # --- run sessions ---------------------------------------------------------------------------

    def _new_session(self, workspace: str, data: Record, *, now: float, lifecycle: bool) -> Record:
        rec: Record = {
            "id": self._next_id("runSession"),
            "workspace": workspace,
            "name": data.get("name"),
            "source": data["source"],
            "isActive": data.get("isActive", True),
            "activeUntil": now + SESSION_TTL_SECONDS if lifecycle else None,
            "escalated": False,
            "notes": data.get("notes"),
            "personaName": data.get("personaName"),
            "status": data.get("status"),
            "workflowId": data.get("workflowId"),
            "context": data.get("context", {}),
            "runRequests": [],
            "runId": None,
            "createdAt": now,
            "updatedAt": now,
        }
        self.run_sessions[rec["id"]] = rec
        self._append_run_requests(rec, data.get("runRequests", []), now, lifecycle=lifecycle)
        return rec

    def _append_run_requests(
        self, session: Record, items: list[Record], now: float, *, lifecycle: bool
    ) -> None:
        for item in items:
            slx = item["slxName"]
            titles = item.get("taskTitles", [])
            request: Record = {
                "id": self._next_id("runRequest"),
                "slxName": slx,
                "runbookName": item.get("runbookName", slx),
                "taskTitles": list(titles) if titles is not None else None,
                "memo": item.get("memo"),
                "createdAt": now,
                "lifecycle": lifecycle,
            }
            if lifecycle:
                request.update(
                    {
                        "stepSeconds": self.run_settings.step_seconds,
                        "outcome": self.run_settings.outcome,
                        "requestTime": None,
                        "responseTime": None,
                        "status": None,
                        "passedTitles": [],
                        "failedTitles": [],
                        "skippedTitles": [],
                    }
                )
            session["runRequests"].append(request)
        if lifecycle:
            self._moving_sessions.add(session["id"])

    def list_run_sessions(
        self,
        workspace: str,
        *,
        modified_lte: float | None = None,
        modified_gte: float | None = None,
        created_lte: float | None = None,
        created_gte: float | None = None,
        runbook_names: Iterable[str] | None = None,
        source: str | None = None,
        workflow_id: int | None = None,
        active: bool | None = None,
    ) -> list[Record]:
        self.get_workspace(workspace)
        wanted = set(runbook_names) if runbook_names is not None else None
        result = []
        for rec in self.run_sessions.values():
            if rec["workspace"] != workspace:
                continue
            if modified_lte is not None and rec["updatedAt"] > modified_lte:
                continue
            if modified_gte is not None and rec["updatedAt"] < modified_gte:
                continue
            if created_lte is not None and rec["createdAt"] > created_lte:
                continue
            if created_gte is not None and rec["createdAt"] < created_gte:
                continue
            if wanted is not None and not any(item["runbookName"] in wanted for item in rec["runRequests"]):
                continue
            if source is not None and rec["source"] != source:
                continue
            if workflow_id is not None and rec["workflowId"] != workflow_id:
                continue
            if active is not None and rec["isActive"] != active:
                continue
            result.append(rec)
        return result

    def get_run_session(self, workspace: str, session_id: int) -> Record:
        self.get_workspace(workspace)
        rec = self.run_sessions.get(session_id)
        if rec is None or rec["workspace"] != workspace:
            raise NotFound("run session", session_id)
        return rec

    def run_session_by_id(self, session_id: int) -> Record:
        rec = self.run_sessions.get(session_id)
        if rec is None:
            raise NotFound("run session", session_id)
        return rec

    def create_run_session(self, workspace: str, data: Record, *, lifecycle: bool = False) -> Record:
        """A new session from validated internal fields; ``lifecycle`` makes its run requests run."""
        self.get_workspace(workspace)
        rec = self._new_session(workspace, data, now=self.clock(), lifecycle=lifecycle)
        self._touch()
        return rec

    def session_named(self, workspace: str, name: str) -> Record | None:
        self.get_workspace(workspace)
        return next(
            (
                rec
                for rec in self.run_sessions.values()
                if rec["workspace"] == workspace and rec["name"] == name
            ),
            None,
        )

    def dedupe_target(self, workspace: str, slx_names: Iterable[str], window: float) -> Record | None:
        """The oldest active session of ``workspace`` with a run request for one of ``slx_names``
        created less than ``window`` seconds ago."""
        names = set(slx_names)
        since = self.clock() - window
        for rec in self.run_sessions.values():
            if rec["workspace"] != workspace or not rec["isActive"]:
                continue
            if any(item["slxName"] in names and item["createdAt"] >= since for item in rec["runRequests"]):
                return rec
        return None

    def merge_run_requests(self, session: Record, items: list[Record]) -> Record:
        now = self.clock()
        self._append_run_requests(session, items, now, lifecycle=True)
        session["updatedAt"] = now
        if session.get("activeUntil") is not None:
            session["activeUntil"] = now + SESSION_TTL_SECONDS
        self._touch()
        return session

    def update_run_session(self, session: Record, changes: Record, new_requests: list[Record]) -> Record:
        now = self.clock()
        session.update(changes)
        self._append_run_requests(session, new_requests, now, lifecycle=False)
        session["updatedAt"] = now
        self._touch()
        return session

    def deactivate_run_session(self, session: Record) -> Record:
        session["isActive"] = False
        session["updatedAt"] = self.clock()
        self._touch()
        return session

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
            if severity_lte is not None and (rec["severity"] is None or rec["severity"] > severity_lte):
                continue
            result.append(rec)
        return result

    def get_issue(self, workspace: str, issue_id: int, *, run_session_id: int | None = None) -> Record:
        self.get_workspace(workspace)
        rec = self.issues.get(issue_id)
        if rec is None or rec["workspace"] != workspace:
            raise NotFound("issue", issue_id)
        if run_session_id is not None and rec["runSessionId"] != run_session_id:
            raise NotFound("issue", issue_id)
        return rec

    def open_issue(self, workspace: str, data: Record) -> Record:
        """A new open issue from validated control fields (``title``, ``severity``, ...)."""
        self.get_workspace(workspace)
        session_id = data.get("runSessionId")
        if session_id is not None:
            session = self.run_sessions.get(session_id)
            if session is None or session["workspace"] != workspace:
                raise Invalid({"runSessionId": ["No run session with this id in the workspace."]})
        now = self.clock()
        rec = {
            "id": self._next_id("issue"),
            "workspace": workspace,
            "runSessionId": session_id,
            "title": data["title"],
            "taskTitle": data.get("taskTitle") or data["title"] or "",
            "severity": data["severity"],
            "slxName": data.get("slxName", ""),
            "openSince": now,
            "openOccurrenceCount": data.get("openOccurrenceCount", 1),
            "closed": False,
            "closedAt": None,
            "modifiedAt": now,
        }
        self.issues[rec["id"]] = rec
        self._touch()
        return rec

    def patch_issue(self, rec: Record, changes: Record) -> Record:
        self._set_closed(rec, changes.pop("closed", rec["closed"]))
        rec.update(changes)
        rec["modifiedAt"] = self.clock()
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
            rec["modifiedAt"] = rec["closedAt"]
        elif not closed:
            rec["closedAt"] = None
        rec["closed"] = closed

    # --- run settings ---------------------------------------------------------------------------

    def set_run_settings(self, data: Record) -> RunSettings:
        if "outcome" in data:
            self.run_settings.outcome = data["outcome"]
        if "stepSeconds" in data:
            self.run_settings.step_seconds = data["stepSeconds"]
        self._touch()
        return self.run_settings

    # --- persistence ----------------------------------------------------------------------------

    def snapshot(self) -> Record:
        return {
            "format": STATE_FORMAT,
            "nextIds": dict(self.next_ids),
            "runSettings": {
                "outcome": self.run_settings.outcome,
                "stepSeconds": self.run_settings.step_seconds,
            },
            "reservedNames": list(self.reserved_names),
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
            reserved = [str(name) for name in data.get("reservedNames", [])]
            moving = {
                sid
                for sid, rec in tables["runSessions"].items()
                if rec.get("activeUntil") is not None
                or any(item.get("lifecycle") for item in rec["runRequests"])
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateFileError(f"malformed state file: {exc!r}") from exc
        self.next_ids.update(next_ids)
        self.workspaces = workspaces
        self.workflows = tables["workflows"]
        self.personas = tables["personas"]
        self.run_sessions = tables["runSessions"]
        self.issues = tables["issues"]
        self.runs = tables["runs"]
        self.reserved_names = reserved
        self.run_settings = run_settings
        self._active_runs = {rid for rid, rec in self.runs.items() if rec["status"] not in TERMINAL_STATUSES}
        self._moving_sessions = moving


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
