"""What a RunWhen workspace already has, as custom resources that adopt it without a write.

The inverse of what the reconcilers send: a Workspace sends the spec fields of
``externals.WORKSPACE_BODY_FIELDS`` (through the dialect's ``workspace_body``), a Workflow or Persona
its name and the fields of ``externals.WORKFLOW_BODY_FIELDS``/``PERSONA_BODY_FIELDS``, and the remote
object is in sync when ``diff.drifted_fields`` finds nothing. ``export`` builds, from the canonical
items of ``runwhen.dialect``, specs for which it finds nothing, and proves it for every document
before it is returned (after the key order a Kubernetes API server gives back, which sorts maps).

- Every spec has ``adoptionPolicy: Adopt``; the Workspace has ``deletionPolicy: Orphan``.
- Server-owned fields (ids, times, owners, counters) are not spec fields and are left out, and so are
  fields holding the value a server gives a field nobody set (``WORKSPACE_DEFAULTS``,
  ``PERSONA_DEFAULTS``): the operator never compares nor writes a field its spec leaves out.
- A value the CRD cannot hold (too long, not of its pattern, a key it does not know) is left out and
  the object's document says so in a comment; an object that cannot be expressed at all (a name that
  is not a DNS label, a workflow without activities) is listed in the header instead.
- The output has no time in it and a fixed order (the Workspace, then Workflows, then Personas, each
  by name), so exporting an unchanged workspace twice gives the same bytes.

``read`` is the one function here that asks a server anything, and only through ``dialect.Api``.
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from runwhen_operator.api import common, persona, workflow, workspace
from runwhen_operator.reconcile import diff, externals
from runwhen_operator.runwhen import dialect

__all__ = [
    "KINDS",
    "PERSONA_DEFAULTS",
    "WORKSPACE_DEFAULTS",
    "Document",
    "Export",
    "ExportError",
    "Options",
    "Remote",
    "WorkspaceNotFound",
    "check_name_prefix",
    "export",
    "parse_kinds",
    "read",
    "render",
]

Item = dict[str, Any]

KIND_WORKSPACE = "Workspace"
KIND_WORKFLOW = "Workflow"
KIND_PERSONA = "Persona"
KINDS = (KIND_WORKSPACE, KIND_WORKFLOW, KIND_PERSONA)

#: Values a server gives a workspace field nobody set (both dialects): such a field is left out.
WORKSPACE_DEFAULTS: Mapping[str, tuple[Any, ...]] = {
    "displayName": ("",),
    "enabledLocations": ([],),
    "configProvided": ([], {}),
    "slxGroups": ([], {}),
}
#: Values a server gives a persona field nobody set (the platform's nulls read as "", the documented
#: API's empty objects, the thresholds and strategy the CRD's descriptions name as server defaults).
PERSONA_DEFAULTS: Mapping[str, tuple[Any, ...]] = {
    "fullName": ("",),
    "description": ("",),
    "avatarUrl": ("",),
    "filterConfidenceThreshold": (0.5,),
    "filterIssueSelectionStrategy": ("MOST_SEVERE",),
    "filterCodebundleTaskTags": ([],),
    "filterStopWords": ([],),
    "filterScope": ("", {}),
    "searchFilters": ({},),
    "runConfidenceThreshold": (0.95,),
    "runConfig": ({},),
}

_DNS_LABEL = re.compile(common.DNS_LABEL_PATTERN)
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_PREFIX = re.compile(r"^([a-z0-9][-a-z0-9.]*)?$")
#: Spec keys in the order they are printed; the body fields follow in the model's order.
_LEADING_KEYS = (
    "workspaceRef",
    "workspaceName",
    "name",
    "connectionRef",
    "adoptionPolicy",
    "deletionPolicy",
)


class ExportError(Exception):
    """The workspace cannot be exported (one line, for the command's stderr)."""


class WorkspaceNotFound(ExportError):
    pass


class _Unexpressible(Exception):
    pass


@dataclass(frozen=True)
class Remote:
    """A remote workspace and its children as canonical items (``dialect``)."""

    workspace: Item
    workflows: Sequence[Item] = ()
    personas: Sequence[Item] = ()


def _same_body(body: Mapping[str, Any]) -> Item:
    return dict(body)


@dataclass(frozen=True)
class Options:
    namespace: str | None = None
    kinds: frozenset[str] = frozenset(KINDS)
    #: put before every metadata.name; then spec.name carries the remote name
    name_prefix: str = ""
    #: the objects' connectionRef; None: the default (the ClusterRunWhenConnection `default`)
    connection_ref: Mapping[str, str] | None = None
    #: the dialect's ``Api.workspace_body`` (the CRD's workspace fields in its canonical form)
    workspace_body: Callable[[Mapping[str, Any]], Item] = _same_body


@dataclass
class Document:
    kind: str
    name: str  # metadata.name
    remote_name: str
    spec: Item
    notes: list[str] = field(default_factory=list)

    def body(self, namespace: str | None) -> Item:
        metadata: Item = {"name": self.name}
        if namespace:
            metadata["namespace"] = namespace
        return {"apiVersion": common.API_VERSION, "kind": self.kind, "metadata": metadata, "spec": self.spec}


@dataclass
class Export:
    documents: list[Document]
    namespace: str | None = None
    #: objects that could not be expressed at all, and why
    skipped: list[str] = field(default_factory=list)


def check_name_prefix(prefix: str) -> None:
    """ValueError when ``prefix`` cannot start a metadata.name."""
    if prefix and not _NAME_PREFIX.match(prefix):
        raise ValueError(
            f"name prefix {_quoted(prefix)} cannot start a metadata.name: use lower-case letters, "
            "digits, '-' and '.', starting with a letter or digit"
        )


def parse_kinds(values: Iterable[str]) -> frozenset[str]:
    """``workspace,workflows Persona`` -> the kinds; ValueError naming an unknown one."""
    by_word = {k.lower(): k for k in KINDS} | {k.lower() + "s": k for k in KINDS}
    out = set()
    for value in values:
        for word in value.replace(",", " ").split():
            kind = by_word.get(word.lower())
            if kind is None:
                raise ValueError(f"unknown kind {word!r}: use Workspace, Workflow or Persona")
            out.add(kind)
    return frozenset(out or KINDS)


# --- remote -> spec -----------------------------------------------------------------------------


def _alias(model: type[BaseModel], name: str) -> str:
    return str(model.model_fields[name].alias or name)


def _body_aliases(model: type[BaseModel], fields: frozenset[str]) -> list[str]:
    """The body fields' camelCase names, in the model's order."""
    return [_alias(model, name) for name in model.model_fields if name in fields]


def _is_default(value: Any, defaults: tuple[Any, ...]) -> bool:
    if value is None:
        return True
    for default in defaults:
        if isinstance(value, bool) or isinstance(default, bool):
            if value is default:
                return True
        elif isinstance(value, int | float) and isinstance(default, int | float):
            if float(value) == float(default):
                return True
        elif type(value) is type(default) and value == default:
            return True
    return False


def _where(path: Sequence[Any]) -> str:
    out = "spec"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _quoted(text: Any) -> str:
    return json.dumps(str(text), ensure_ascii=False)


def _lookup(data: Any, path: Sequence[Any]) -> tuple[bool, Any]:
    for part in path:
        in_map = isinstance(part, str) and isinstance(data, dict) and part in data
        in_list = isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data)
        if in_map or in_list:
            data = data[part]
        else:
            return False, None
    return True, data


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return f"the value {json.dumps(value)}" if isinstance(value, int | float | bool) else "a value"


def _fit(model: type[BaseModel], candidate: Item, keep: frozenset[str]) -> tuple[Item, list[str]]:
    """The candidate spec as the model (and so the CRD) takes it: values the model refuses are left out
    (a key in a map; a list element cannot be, since lists are compared element by element), each with
    a note; keys the model does not know are left out with a note. ``_Unexpressible`` when a required
    value (one of ``keep``, or one inside a list element) would have to go."""
    data = copy.deepcopy(candidate)
    notes: list[str] = []
    for _ in range(1000):
        try:
            parsed = model.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = tuple(error.get("loc") or ())
            reason = str(error.get("msg") or "refused by the CRD")
            path = _droppable(data, loc, keep)
            if path is None:
                raise _Unexpressible(f"{_where(loc)}: {reason}") from None
            _, value = _lookup(data, path)
            container = _lookup(data, path[:-1])[1]
            del container[path[-1]]
            if tuple(path) == loc:
                notes.append(f"{_where(path)} left out: the CRD cannot hold {_describe(value)} ({reason})")
            else:
                notes.append(
                    f"{_where(path)} left out: the CRD cannot hold {_where(loc)} ({reason}), and part of "
                    "a list cannot be left out alone"
                )
            continue
        out = parsed.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")
        for path in _pruned(data, out, ()):
            notes.append(f"{_where(path)} left out: the {model.__name__} schema has no such field")
        return out, notes
    raise _Unexpressible("too many values the CRD cannot hold")


def _droppable(data: Item, loc: tuple[Any, ...], keep: frozenset[str]) -> tuple[Any, ...] | None:
    """The deepest map key on ``loc`` that is present and may go: not a required top-level field, and
    not inside a list element whose removal would shorten the list."""
    for end in range(len(loc), 0, -1):
        path = loc[:end]
        if not isinstance(path[-1], str):
            continue
        if len(path) == 1 and path[0] in keep:
            return None
        found, _ = _lookup(data, path)
        parent_found, parent = _lookup(data, path[:-1])
        if found and parent_found and isinstance(parent, dict):
            return path
    return None


def _pruned(data: Any, out: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(data, dict) and isinstance(out, dict):
        for key, value in data.items():
            if key not in out:
                if value is not None:
                    yield (*path, key)
            else:
                yield from _pruned(value, out[key], (*path, key))
    elif isinstance(data, list) and isinstance(out, list):
        for index, (d, o) in enumerate(zip(data, out, strict=False)):
            yield from _pruned(d, o, (*path, index))


def _as_map(value: Any) -> dict[str, Any] | None:
    """A list of ``{name, <one other key>}`` objects with distinct names as ``{name: value}``, the form
    the CRD documents; None when the list has another shape."""
    if not isinstance(value, list) or not value:
        return None
    other: set[str] = set()
    out: dict[str, Any] = {}
    for item in value:
        if not isinstance(item, dict) or len(item) != 2 or not isinstance(item.get("name"), str):
            return None
        other |= set(item) - {"name"}
        if item["name"] in out:
            return None
        out[item["name"]] = next(v for k, v in item.items() if k != "name")
    return out if len(other) == 1 else None


def _through_kubernetes(value: Any) -> Any:
    """What an API server gives back of a value it stored: maps with sorted keys."""
    return json.loads(json.dumps(value, sort_keys=True))


def _ordered(spec: Item, body_keys: Sequence[str]) -> Item:
    order = [*_LEADING_KEYS, *body_keys]
    out = {k: spec[k] for k in order if k in spec}
    out.update({k: v for k, v in spec.items() if k not in out})
    return out


def _names(remote_name: str, options: Options) -> str:
    return options.name_prefix + remote_name


def _name_problem(remote_name: Any, options: Options) -> str | None:
    if not isinstance(remote_name, str) or not remote_name:
        return "it has no name"
    if len(remote_name) > common.DNS_LABEL_MAX_LENGTH or not _DNS_LABEL.match(remote_name):
        return (
            "its name is not a DNS label (lower-case letters, digits and '-', at most "
            f"{common.DNS_LABEL_MAX_LENGTH} characters), which spec.name requires"
        )
    name = _names(remote_name, options)
    if len(name) > common.MAX_OBJECT_NAME_LENGTH or not _OBJECT_NAME.match(name):
        return f"{_quoted(name)} is not a valid metadata.name"
    return None


def _common(spec: Item, remote_name: str, name: str, options: Options) -> None:
    if name != remote_name:
        spec["name"] = remote_name
    if options.connection_ref is not None:
        spec["connectionRef"] = dict(options.connection_ref)
    spec["adoptionPolicy"] = "Adopt"


def _workspace_document(remote: Item, options: Options) -> Document:
    remote_name = remote.get("name")
    problem = _name_problem(remote_name, options)
    if problem is not None:
        raise ExportError(f"workspace {_quoted(remote_name)} cannot be exported: {problem}")
    name = _names(str(remote_name), options)
    spec: Item = {}
    _common(spec, str(remote_name), name, options)
    spec["deletionPolicy"] = "Orphan"
    model = workspace.WorkspaceSpec
    body_keys = _body_aliases(model, externals.WORKSPACE_BODY_FIELDS)
    for key in body_keys:
        value = remote.get(key)
        if _is_default(value, WORKSPACE_DEFAULTS.get(key, ())):
            continue
        as_map = _as_map(value)
        if as_map is not None and _reads_back({key: as_map}, remote, options):
            value = as_map  # the map form the CRD documents, where the server keeps its order
        spec[key] = copy.deepcopy(value)
    try:
        fitted, notes = _fit(model, spec, frozenset())
    except _Unexpressible as exc:
        raise ExportError(f"workspace {_quoted(remote_name)} cannot be exported: {exc}") from None
    for key in sorted(_workspace_drift(fitted, remote, options)):
        notes.append(
            f"spec.{key} left out: its value in the CRD's form does not read back as the remote value"
        )
        del fitted[key]
    return Document(KIND_WORKSPACE, name, str(remote_name), _ordered(fitted, body_keys), notes)


def _reads_back(spec: Item, remote: Item, options: Options) -> bool:
    try:
        return not _workspace_drift(spec, remote, options)
    except ValidationError:
        return False


def _workspace_drift(spec: Item, remote: Item, options: Options) -> dict[str, Any]:
    """The fields the operator would PATCH, reading the spec as an API server gives it back."""
    parsed = workspace.WorkspaceSpec.model_validate(_through_kubernetes(spec))
    wire = externals.spec_body(parsed, externals.WORKSPACE_BODY_FIELDS)
    desired = options.workspace_body(wire)
    return diff.drifted_fields(desired, remote, externals.WORKSPACE_SET_KEYS, externals.WORKSPACE_EXACT_KEYS)


@dataclass(frozen=True)
class _ChildKind:
    kind: str
    model: type[common.WorkspaceParentSpec]
    fields: frozenset[str]
    api_kind: dialect.ChildKind
    defaults: Mapping[str, tuple[Any, ...]]
    required: frozenset[str]


_WORKFLOW = _ChildKind(
    KIND_WORKFLOW,
    workflow.WorkflowSpec,
    externals.WORKFLOW_BODY_FIELDS,
    dialect.WORKFLOW,
    {},
    frozenset({"definition", "workspaceRef", "workspaceName", "name"}),
)
_PERSONA = _ChildKind(
    KIND_PERSONA,
    persona.PersonaSpec,
    externals.PERSONA_BODY_FIELDS,
    dialect.PERSONA,
    PERSONA_DEFAULTS,
    frozenset({"workspaceRef", "workspaceName", "name"}),
)


def _child_drift(kind: _ChildKind, spec: Item, remote_name: str, remote: Item) -> dict[str, Any]:
    parsed = kind.model.model_validate(_through_kubernetes(spec))
    wire = externals.spec_body(parsed, kind.fields)
    desired = {"name": remote_name, **wire}
    return diff.drifted_fields(desired, remote, kind.api_kind.set_keys, kind.api_kind.exact_keys)


def _child_document(
    kind: _ChildKind, remote: Item, parent: Item, options: Options
) -> tuple[Document | None, str | None]:
    remote_name = remote.get("name")
    what = f"{kind.kind.lower()} {_quoted(remote_name)}"
    problem = _name_problem(remote_name, options)
    if problem is not None:
        return None, f"{what}: {problem}"
    name = _names(str(remote_name), options)
    spec: Item = dict(parent)
    _common(spec, str(remote_name), name, options)
    body_keys = _body_aliases(kind.model, kind.fields)
    for key in body_keys:
        value = remote.get(key)
        if key in kind.defaults and _is_default(value, kind.defaults[key]):
            continue
        if value is not None:
            spec[key] = copy.deepcopy(value)
    try:
        fitted, notes = _fit(kind.model, spec, kind.required)
    except _Unexpressible as exc:
        return None, f"{what}: the CRD cannot hold it ({exc})"
    drift = _child_drift(kind, fitted, str(remote_name), remote)
    for key in sorted(drift):
        if key in kind.required:
            return None, f"{what}: spec.{key} in the CRD's form does not read back as the remote value"
        notes.append(
            f"spec.{key} left out: its value in the CRD's form does not read back as the remote value"
        )
        del fitted[key]
    return Document(kind.kind, name, str(remote_name), _ordered(fitted, body_keys), notes), None


def export(remote: Remote, options: Options | None = None) -> Export:
    """The documents that adopt ``remote`` unchanged (see the module's description)."""
    options = options or Options()
    try:
        check_name_prefix(options.name_prefix)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    ws = _workspace_document(remote.workspace, options)
    documents: list[Document] = []
    if KIND_WORKSPACE in options.kinds:
        documents.append(ws)
        parent: Item = {"workspaceRef": {"name": ws.name}}
    else:
        parent = {"workspaceName": ws.remote_name}
    skipped: list[str] = []
    for kind, items in ((_WORKFLOW, remote.workflows), (_PERSONA, remote.personas)):
        if kind.kind not in options.kinds:
            continue
        for item in sorted(items, key=lambda i: str(i.get("name"))):
            document, why = _child_document(kind, item, parent, options)
            if document is not None:
                documents.append(document)
            if why is not None:
                skipped.append(why)
    return Export(documents=documents, namespace=options.namespace, skipped=skipped)


# --- output -------------------------------------------------------------------------------------


def _comment(text: str) -> str:
    lines = textwrap.wrap(" ".join(text.split()), width=98, break_long_words=False, break_on_hyphens=False)
    return "".join(f"# {line}\n" for line in lines)


def render(result: Export, *, source: str) -> str:
    """A multi-document YAML stream: a header comment, then one document per object, each preceded by
    comments saying what of the remote object it leaves out."""
    lines = [
        _comment(f"RunWhen objects exported from {source} by `runwhen-operator export`."),
        _comment(
            "Applied with the operator running, each object adopts its remote object "
            "(adoptionPolicy: Adopt) and finds it in sync: nothing is written to RunWhen. The Workspace "
            "has deletionPolicy: Orphan (deleting it leaves the remote workspace)."
        ),
        _comment(
            "Not included: server-owned fields (ids, times, owners), fields holding the server's "
            "defaults, webhook tokens, credentials and runner locations."
        ),
    ]
    for why in result.skipped:
        lines.append(_comment(f"Not exported: {why}."))
    out = "".join(lines)
    for document in result.documents:
        out += "---\n"
        out += "".join(_comment(note) for note in document.notes)
        out += yaml.safe_dump(document.body(result.namespace), sort_keys=False, allow_unicode=True, width=100)
    return out


# --- reading ------------------------------------------------------------------------------------


async def read(api: dialect.Api, name: str, kinds: Iterable[str] = KINDS) -> Remote:
    """The workspace ``name`` and its workflows and personas as the operator observes them (the
    listings it compares with), through any dialect."""
    wanted = set(kinds)
    found = next((i for i in await api.workspace_listing() if i.get("name") == name), None)
    if found is None:
        found = await api.read_workspace(name)
    if found is None:
        raise WorkspaceNotFound(
            f'workspace "{name}" not found at {api.client.base_url} (or these credentials cannot see it)'
        )
    workflows = await api.child_listing(dialect.WORKFLOW, name) if KIND_WORKFLOW in wanted else []
    personas = await api.child_listing(dialect.PERSONA, name) if KIND_PERSONA in wanted else []
    return Remote(workspace=found, workflows=workflows, personas=personas)
