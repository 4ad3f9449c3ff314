"""What the operator asks of a RunWhen server, whatever shape of the API the server speaks.

Two dialects exist: ``Platform`` (what the running RunWhen server speaks, described by its own
OpenAPI document: v3 reads, v4 ``sync-typed`` upserts of workflows and personas keyed by short
name, a snake_case workspace PATCH, limit/offset paging, FastAPI errors) and ``Documented`` (the
older public pages: trailing slashes, integer ids, POST/PUT/DELETE everywhere). Each has one module
(``platform``, ``documented``) that alone knows its paths, payloads, identities and paging; above
this layer the engine and the handlers speak only the canonical shapes defined here:

- a workspace item: ``{"name", "displayName", "enabledLocations", "configProvided", "slxGroups", ...}``
  (the CRD's camelCase spec fields, plus whatever else the server reported);
- a child item (workflow or persona): ``{"name": <short name>, "id": <server id>, "createdAt", ...}``
  plus the CRD's camelCase body fields; ``Api.child_key`` names the field that identifies it;
- health, status flags and issues as the ``models`` classes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import SecretStr

from runwhen_operator.runwhen import client, errors, models

__all__ = [
    "PERSONA",
    "WORKFLOW",
    "Api",
    "Base",
    "ChildKind",
    "Dialect",
    "Item",
    "RunState",
    "Runner",
    "RunnerToken",
    "UploadInfo",
    "WorkflowTarget",
    "WorkspaceReport",
    "parse_dialect",
]

Item = dict[str, Any]


class Dialect(enum.StrEnum):
    PLATFORM = "Platform"
    DOCUMENTED = "Documented"


def parse_dialect(value: str | None) -> Dialect | None:
    """``Platform``/``Documented`` (any case) as a Dialect; None for ``Auto`` or nothing."""
    if not value or value.lower() == "auto":
        return None
    for dialect in Dialect:
        if dialect.value.lower() == value.lower():
            return dialect
    raise ValueError(f"unknown API dialect {value!r}: use Auto, Platform or Documented")


@dataclass(frozen=True)
class ChildKind:
    """A kind of object that lives in a workspace, with how its fields compare."""

    label: str  # "workflow" | "persona"
    set_keys: frozenset[str] = frozenset()  # lists the API treats as sets
    exact_keys: frozenset[str] = frozenset()  # free-form values the user owns whole


WORKFLOW = ChildKind("workflow", set_keys=frozenset({"activityVerbs", "slxs"}))
PERSONA = ChildKind(
    "persona",
    set_keys=frozenset({"filterCodebundleTaskTags", "filterStopWords"}),
    exact_keys=frozenset({"filterScope", "searchFilters", "runConfig"}),
)


@dataclass(frozen=True)
class WorkspaceReport:
    """What the health mirror shows: the workspace's health and its status flags."""

    health: models.WorkspaceHealth
    flags: models.WorkspaceStatus


@dataclass(frozen=True)
class WorkflowTarget:
    """The workflow a run is for: its workspace, and its id and/or short name (each dialect needs one)."""

    workspace: str
    id: int | None = None
    name: str | None = None
    #: the workflow's definition as the server has it, where the dialect needs it to start a run
    definition: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RunState:
    """A run as the server reports it. ``phase`` is one of the WorkflowRun phases (``Queued``,
    ``Started``, ``Completed``, ``CompletedWithErrors``, ``Failed``, ``Canceled``)."""

    session_id: int | None
    phase: str
    message: str
    run_id: int | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class Runner:
    """A runner registered in a workspace: its display name, its id (RunWhen's ``value``), its health
    (``online``, ``stale`` or ``unknown``) and when it last reported."""

    name: str
    id: str
    health: str
    last_heartbeat: datetime | None = None


@dataclass(frozen=True)
class RunnerToken:
    """A runner registration token (kept out of reprs and logs)."""

    token: SecretStr


@dataclass(frozen=True)
class UploadInfo:
    """The workspace builder's upload configuration (``uploadInfo.yaml``): ``values`` holds every key
    but the token, in the builder's names (``papiURL``, ``workspaceName``, ``workspaceOwnerEmail``,
    ``defaultLocation``, ``locationName``, ...)."""

    values: Mapping[str, Any]
    token: SecretStr

    def document(self) -> dict[str, Any]:
        """The full mapping the builder reads, token included (for the Secret only)."""
        return {**self.values, "token": self.token.get_secret_value()}


#: The keys of the builder's upload configuration the operator fills in when the server leaves them
#: out (the server's answer is free-form in its document).
UPLOAD_INFO_KEYS = ("papiURL", "workspaceName", "workspaceOwnerEmail", "defaultLocation", "locationName")


def upload_info(answer: Any, *, papi_url: str, workspace: str, location: str) -> UploadInfo:
    """The upload configuration from a server's answer: the mapping itself (or under ``uploadInfo``
    or ``uploadConfig``), with ``token`` required and the builder's other keys filled in from what
    the operator knows where the answer leaves them out (``papi_url`` is read as ``papiURL``)."""
    if isinstance(answer, Mapping):
        for key in ("uploadInfo", "uploadConfig"):
            inner = answer.get(key)
            if isinstance(inner, Mapping):
                answer = inner
                break
    if not isinstance(answer, Mapping):
        raise errors.UnexpectedResponseError("the upload configuration is not an object")
    values = {str(k): v for k, v in answer.items() if k not in ("token", "papi_url")}
    token = answer.get("token")
    if not isinstance(token, str) or not token:
        raise errors.UnexpectedResponseError("the upload configuration has no token")
    if "papiURL" not in values:
        values["papiURL"] = str(answer.get("papi_url") or papi_url)
    values.setdefault("workspaceName", workspace)
    values.setdefault("locationName", location)
    if "locationId" not in values:
        values.setdefault("defaultLocation", location)
    return UploadInfo(values=values, token=SecretStr(token))


def runner_token(answer: Any) -> RunnerToken:
    """The registration token from the server's answer (``{"token": ...}``; free-form in its
    document)."""
    token = answer.get("token") if isinstance(answer, Mapping) else None
    if not isinstance(token, str) or not token:
        raise errors.UnexpectedResponseError("the runner-token answer has no token")
    return RunnerToken(token=SecretStr(token))


def location_runners(runners: list[Runner], workspace: str, location: str) -> list[Runner]:
    """The runners of one location: a runner registers under the location's name (the server may
    show it as ``<workspace>--<location>``), online ones first, then by the newest heartbeat."""
    names = {location, f"{workspace}--{location}"}
    mine = [r for r in runners if r.name in names]
    rank = {"online": 0, "stale": 1}
    return sorted(
        mine,
        key=lambda r: (rank.get(r.health, 2), -(r.last_heartbeat.timestamp() if r.last_heartbeat else 0.0)),
    )


class Api(Protocol):
    """One dialect over one ``client.RunWhenClient``."""

    api_dialect: Dialect
    #: the canonical field that identifies a workflow or persona: "name" (short name) or "id"
    child_key: str
    #: creating a workflow or persona is an idempotent upsert by name (no duplicate is possible)
    idempotent_child_create: bool

    @property
    def client(self) -> client.RunWhenClient: ...

    async def probe(self) -> None:
        """One cheap authenticated request that only a server of this dialect answers with 2xx."""
        ...

    async def verify(self) -> None: ...

    async def aclose(self) -> None: ...

    # workspaces
    def workspace_body(self, body: Mapping[str, Any]) -> Item:
        """The CRD's workspace fields (camelCase) in this dialect's canonical form."""
        ...

    async def workspace_listing(self) -> list[Item]: ...

    async def read_workspace(self, name: str) -> Item | None:
        """The workspace called ``name``, read by itself rather than from a listing (the last word
        when a listing does not show it); None when the server answers 404."""
        ...

    async def new_workspace(self, name: str, body: Mapping[str, Any]) -> Item:
        """Create it with the fields of ``body``; ``errors.WorkspaceRenamedError`` if the server gave
        the new workspace another name (it is deleted again before raising)."""
        ...

    async def change_workspace(self, name: str, changes: Mapping[str, Any]) -> Item: ...

    async def remove_workspace(self, name: str) -> None: ...

    async def workspace_report(
        self, name: str, *, include_details: bool, include_metrics: bool
    ) -> WorkspaceReport: ...

    async def open_issues(self, name: str, *, max_severity: int) -> list[models.Issue]: ...

    # workflows and personas
    async def child_listing(self, kind: ChildKind, workspace: str) -> list[Item]: ...

    async def read_child(self, kind: ChildKind, workspace: str, key: Any) -> Item | None:
        """One workflow or persona read by itself, by its ``child_key`` value (short name or id);
        None when the server answers 404 (no such object, or no such workspace)."""
        ...

    async def new_child(self, kind: ChildKind, workspace: str, body: Mapping[str, Any]) -> Item: ...

    async def change_child(
        self, kind: ChildKind, workspace: str, key: Any, body: Mapping[str, Any]
    ) -> Item: ...

    async def remove_child(self, kind: ChildKind, workspace: str, key: Any) -> None: ...

    async def webhook_token(self, workspace: str, key: Any, *, rotate: bool) -> models.WebhookToken:
        """The workflow's webhook token; ``rotate`` asks for a new one first."""
        ...

    # runner locations
    async def runner_token(self, workspace: str, location: str) -> RunnerToken:
        """A new registration token for a runner of ``location`` (each read makes a new one)."""
        ...

    async def upload_info(self, workspace: str, location: str) -> UploadInfo:
        """The workspace builder's upload configuration for ``location``."""
        ...

    async def runners(self, workspace: str) -> list[Runner]:
        """Every runner registered in the workspace."""
        ...

    async def remove_runner(self, workspace: str, runner_id: str) -> None:
        """Delete a runner registration; ``errors.NotFoundError`` when there is none."""
        ...

    # runs
    async def resolve_workflow(self, target: WorkflowTarget) -> WorkflowTarget:
        """The target with what this dialect needs to start a run filled in (read before the intent
        is recorded, so that a failure here proves no run was started)."""
        ...

    async def start_run(
        self, target: WorkflowTarget, marker: str, context: Mapping[str, Any] | None
    ) -> RunState:
        """Start one run marked with ``marker`` (the WorkflowRun's uid), so ``find_run`` can find it
        after a lost answer."""
        ...

    async def find_run(self, target: WorkflowTarget, marker: str, since: datetime) -> RunState | None: ...

    async def get_run(self, target: WorkflowTarget, session_id: int) -> RunState: ...


class Base:
    """What every dialect's ``Api`` shares: the transport it runs over, its lifecycle, ``verify``."""

    def __init__(self, rw: client.RunWhenClient) -> None:
        self._rw = rw

    @property
    def client(self) -> client.RunWhenClient:
        return self._rw

    async def probe(self) -> None:
        raise NotImplementedError

    async def verify(self) -> None:
        """Log in (password credentials) and make the dialect's one authenticated request."""
        await self._rw.login()
        await self.probe()

    async def aclose(self) -> None:
        await self._rw.aclose()

    async def __aenter__(self) -> Base:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def json_body(response: Any) -> Any:
    """An answer's JSON body; ``errors.UnexpectedResponseError`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise errors.UnexpectedResponseError(
            f"{response.request.method} {response.request.url.path} answered a body that is not JSON",
            status_code=response.status_code,
        ) from None


def not_supported(exc: errors.RunWhenError) -> bool:
    """Whether an error says the server has no such endpoint (404/405), rather than a failure."""
    return exc.status_code in (404, 405)
