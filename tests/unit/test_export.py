"""``runwhen-operator export``: the mapping of remote objects to custom resources (pure, table by
table: what is kept, what is left out as a server default or a server-owned field, what the CRD cannot
hold and is commented), and the command against the emulator in this process (both dialects): its
help, its output, and one line on stderr with a non-zero exit for each way it can fail."""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runwhen_operator import cli
from runwhen_operator.api import persona, workflow, workspace
from runwhen_operator.emulator import app, core
from runwhen_operator.reconcile import diff, export, externals
from runwhen_operator.runwhen import auth, client, dialect, documented, platform

Item = dict[str, Any]

PLATFORM = export.Options(workspace_body=platform.PlatformApi.workspace_body)
DOCUMENTED = export.Options(workspace_body=documented.DocumentedApi.workspace_body)

DEFINITION: Item = {
    "fromActivities": [
        {
            "name": "on-alert",
            "displayName": "Alerte déclenchée ☃",
            "description": "d" * 4096,
            "match": {"activityVerbs": ["alert", "page"], "slxs": []},
            "actions": [
                {"tasks": {"slx": "k8s-pods", "persona": "edgar", "titles": [], "sessionTTL": "20m"}}
            ],
        }
    ]
}


def platform_workspace(**fields: Any) -> Item:
    """A workspace item as ``PlatformApi.workspace_listing`` gives it (server fields included)."""
    item: Item = {
        "id": 7,
        "name": "ops",
        "alias": "",
        "description": "",
        "owner": {"id": 1, "email": "admin@example.com"},
        "enabledLocations": [],
        "configProvided": [],
        "slxGroups": [],
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
        "spec": {"commitToMain": True},
        "openIssuesCount": 3,
    }
    item.update(fields)
    if "alias" in fields:
        item["displayName"] = fields["alias"]
    return item


def documented_workspace(**fields: Any) -> Item:
    item: Item = {
        "name": "ops",
        "displayName": "",
        "owner": "admin",
        "configProvided": {},
        "secretsProvided": {"api-key": {"vault": "x"}},
        "enabledLocations": [],
        "slxGroups": {},
        "createdAt": "2026-01-01T00:00:00Z",
    }
    item.update(fields)
    return item


def workflow_item(name: str = "restart", definition: Item | None = None, **extra: Any) -> Item:
    return {
        "id": 3,
        "name": name,
        "shortName": name,
        "serverName": f"ops--{name}",
        "definition": copy.deepcopy(DEFINITION if definition is None else definition),
        "createdAt": "2026-01-01T00:00:00Z",
        **extra,
    }


def persona_item(name: str = "edgar", **fields: Any) -> Item:
    item: Item = {
        "id": 4,
        "name": name,
        "fullName": None,
        "description": None,
        "avatarUrl": None,
        "filterConfidenceThreshold": 0.5,
        "filterIssueSelectionStrategy": "MOST_SEVERE",
        "filterCodebundleTaskTags": [],
        "filterStopWords": [],
        "filterScope": None,
        "searchFilters": {},
        "runConfidenceThreshold": 0.95,
        "runConfig": {},
        "createdAt": "2026-01-01T00:00:00Z",
    }
    item.update(fields)
    return item


def doc(result: export.Export, kind: str, name: str) -> export.Document:
    [found] = [d for d in result.documents if d.kind == kind and d.name == name]
    return found


def no_drift(document: export.Document, remote: Item, options: export.Options) -> None:
    """What the reconcilers would send for the spec (read back as an API server gives it) matches."""
    spec_text = yaml.safe_dump(document.spec)
    spec = yaml.safe_load(spec_text)
    if document.kind == "Workspace":
        parsed: Any = workspace.WorkspaceSpec.model_validate(spec)
        wire = parsed.model_dump(
            by_alias=True, exclude_none=True, mode="json", include=set(externals.WORKSPACE_BODY_FIELDS)
        )
        desired = options.workspace_body(dict(sorted(wire.items())))
        drift = diff.drifted_fields(
            desired, remote, externals.WORKSPACE_SET_KEYS, externals.WORKSPACE_EXACT_KEYS
        )
    else:
        model, fields, kind = {
            "Workflow": (workflow.WorkflowSpec, externals.WORKFLOW_BODY_FIELDS, dialect.WORKFLOW),
            "Persona": (persona.PersonaSpec, externals.PERSONA_BODY_FIELDS, dialect.PERSONA),
        }[document.kind]
        parsed = model.model_validate(spec)
        wire = parsed.model_dump(by_alias=True, exclude_none=True, mode="json", include=set(fields))
        desired = {"name": parsed.remote_name(document.name), **wire}
        drift = diff.drifted_fields(desired, remote, kind.set_keys, kind.exact_keys)
    assert drift == {}, drift


# --- the workspace ------------------------------------------------------------------------------


def test_platform_workspace_keeps_what_was_set_and_leaves_out_server_fields_and_defaults() -> None:
    remote = platform_workspace(
        alias="Ops — Équipe ☃",
        enabledLocations=["loc-b", "loc-a"],
        configProvided=[{"name": "a", "value": "1"}, {"name": "b", "value": {"nested": [1, 2]}}],
        slxGroups=[{"name": "pods", "slxs": ["k8s-pods"]}],
    )
    result = export.export(export.Remote(workspace=remote), PLATFORM)
    ws = doc(result, "Workspace", "ops")
    assert ws.spec == {
        "adoptionPolicy": "Adopt",
        "deletionPolicy": "Orphan",
        "displayName": "Ops — Équipe ☃",
        "enabledLocations": ["loc-b", "loc-a"],  # the server's order, which is not compared
        "configProvided": {"a": "1", "b": {"nested": [1, 2]}},
        "slxGroups": {"pods": ["k8s-pods"]},
    }
    assert ws.notes == []
    no_drift(ws, remote, PLATFORM)


def test_platform_config_in_an_order_an_api_server_would_not_keep_stays_a_list() -> None:
    # An API server gives maps back with sorted keys; the platform's list is compared in order.
    config = [{"name": "zeta", "value": "1"}, {"name": "alpha", "value": "2"}]
    odd = [{"name": "x", "value": "1", "secret": False}]
    remote = platform_workspace(configProvided=config, slxGroups=odd)
    ws = doc(export.export(export.Remote(workspace=remote), PLATFORM), "Workspace", "ops")
    assert ws.spec["configProvided"] == config
    assert ws.spec["slxGroups"] == odd
    no_drift(ws, remote, PLATFORM)


def test_documented_workspace_maps_stay_maps() -> None:
    remote = documented_workspace(configProvided={"z": "1", "a": None}, slxGroups={"g": []})
    ws = doc(export.export(export.Remote(workspace=remote), DOCUMENTED), "Workspace", "ops")
    assert ws.spec["configProvided"] == {"z": "1", "a": None}
    assert ws.spec["slxGroups"] == {"g": []}
    assert "secretsProvided" not in ws.spec
    assert "owner" not in ws.spec
    no_drift(ws, remote, DOCUMENTED)


def test_a_display_name_the_crd_cannot_hold_is_left_out_with_a_comment() -> None:
    remote = documented_workspace(displayName="n" * 300)
    ws = doc(export.export(export.Remote(workspace=remote), DOCUMENTED), "Workspace", "ops")
    assert "displayName" not in ws.spec
    assert ws.notes == [
        "spec.displayName left out: the CRD cannot hold a string of 300 characters "
        "(String should have at most 256 characters)"
    ]
    no_drift(ws, remote, DOCUMENTED)


def test_a_workspace_name_that_is_not_a_dns_label_cannot_be_exported() -> None:
    with pytest.raises(export.ExportError, match=r'workspace "Ops_Team" cannot be exported: .*DNS label'):
        export.export(export.Remote(workspace=documented_workspace(name="Ops_Team")), DOCUMENTED)


# --- workflows ----------------------------------------------------------------------------------


def test_workflow_definition_is_kept_whole_with_unicode_empty_lists_and_long_texts() -> None:
    remote = workflow_item()
    result = export.export(export.Remote(workspace=platform_workspace(), workflows=[remote]), PLATFORM)
    wf = doc(result, "Workflow", "restart")
    assert wf.spec == {"workspaceRef": {"name": "ops"}, "adoptionPolicy": "Adopt", "definition": DEFINITION}
    assert wf.notes == []
    no_drift(wf, remote, PLATFORM)


def test_what_the_workflow_crd_cannot_hold_is_commented_and_the_rest_kept() -> None:
    definition = copy.deepcopy(DEFINITION)
    activity = definition["fromActivities"][0]
    activity["description"] = "x" * 5000
    activity["priority"] = 3  # not a field of the CRD
    activity["actions"][0]["tasks"]["titles"] = ["ok", "t" * 600]
    remote = workflow_item(definition=definition)
    wf = doc(
        export.export(export.Remote(workspace=platform_workspace(), workflows=[remote]), PLATFORM),
        "Workflow",
        "restart",
    )
    kept = wf.spec["definition"]["fromActivities"][0]
    assert "description" not in kept
    assert "priority" not in kept
    assert "titles" not in kept["actions"][0]["tasks"]
    assert kept["actions"][0]["tasks"]["slx"] == "k8s-pods"
    assert wf.notes == [
        "spec.definition.fromActivities[0].description left out: the CRD cannot hold a string of 5000 "
        "characters (String should have at most 4096 characters)",
        "spec.definition.fromActivities[0].actions[0].tasks.titles left out: the CRD cannot hold "
        "spec.definition.fromActivities[0].actions[0].tasks.titles[1] (String should have at most 512 "
        "characters), and part of a list cannot be left out alone",
        "spec.definition.fromActivities[0].priority left out: the WorkflowSpec schema has no such field",
    ]
    no_drift(wf, remote, PLATFORM)


@pytest.mark.parametrize(
    ("name", "definition", "why"),
    [
        ("empty", {"fromActivities": []}, "the CRD cannot hold it"),
        (
            "no-actions",
            {"fromActivities": [{"name": "a", "actions": []}]},
            "the CRD cannot hold it",
        ),
        ("Not_A_Label", DEFINITION, "its name is not a DNS label"),
    ],
)
def test_workflows_the_crd_cannot_hold_are_named_in_the_header(name: str, definition: Item, why: str) -> None:
    result = export.export(
        export.Remote(workspace=platform_workspace(), workflows=[workflow_item(name, definition)]), PLATFORM
    )
    assert [d.kind for d in result.documents] == ["Workspace"]
    [skipped] = result.skipped
    assert skipped.startswith(f'workflow "{name}": {why}'), skipped
    assert f'# Not exported: workflow "{name}"' in export.render(result, source="here")


# --- personas -----------------------------------------------------------------------------------


def test_persona_defaults_are_left_out_and_set_values_kept() -> None:
    remote = persona_item(
        fullName="Éager Edgar 🤖",
        description="long " * 800,
        filterConfidenceThreshold=0.7,
        filterStopWords=["the", "a"],
        filterScope="namespace:prod",
        runConfig={"mode": "auto", "limits": {"max": 3, "none": None}},
    )
    result = export.export(export.Remote(workspace=platform_workspace(), personas=[remote]), PLATFORM)
    p = doc(result, "Persona", "edgar")
    assert p.spec == {
        "workspaceRef": {"name": "ops"},
        "adoptionPolicy": "Adopt",
        "fullName": "Éager Edgar 🤖",
        "description": "long " * 800,
        "filterConfidenceThreshold": 0.7,
        "filterStopWords": ["the", "a"],
        "filterScope": "namespace:prod",
        "runConfig": {"mode": "auto", "limits": {"max": 3, "none": None}},
    }
    no_drift(p, remote, PLATFORM)


def test_a_persona_with_only_defaults_is_its_name() -> None:
    remote = persona_item(fullName="", description="", filterScope={}, runConfig={})
    p = doc(
        export.export(export.Remote(workspace=documented_workspace(), personas=[remote]), DOCUMENTED),
        "Persona",
        "edgar",
    )
    assert p.spec == {"workspaceRef": {"name": "ops"}, "adoptionPolicy": "Adopt"}
    no_drift(p, remote, DOCUMENTED)


def test_persona_values_out_of_the_crd_bounds_are_commented() -> None:
    remote = persona_item(
        avatarUrl="ftp://example.com/a.png",
        filterCodebundleTaskTags=["ok", "t" * 200],
        runConfidenceThreshold=0.8,
    )
    p = doc(
        export.export(export.Remote(workspace=platform_workspace(), personas=[remote]), PLATFORM),
        "Persona",
        "edgar",
    )
    assert p.spec["runConfidenceThreshold"] == 0.8
    assert "avatarUrl" not in p.spec
    assert "filterCodebundleTaskTags" not in p.spec
    assert [n.split(":")[0] for n in p.notes] == [
        "spec.avatarUrl left out",
        "spec.filterCodebundleTaskTags left out",
    ]
    no_drift(p, remote, PLATFORM)


# --- names, kinds, order, output ----------------------------------------------------------------


def test_a_name_prefix_keeps_the_remote_names_in_spec_name() -> None:
    remote = export.Remote(
        workspace=platform_workspace(), workflows=[workflow_item()], personas=[persona_item()]
    )
    options = export.Options(name_prefix="team-a-", workspace_body=platform.PlatformApi.workspace_body)
    result = export.export(remote, options)
    assert [(d.kind, d.name, d.spec.get("name")) for d in result.documents] == [
        ("Workspace", "team-a-ops", "ops"),
        ("Workflow", "team-a-restart", "restart"),
        ("Persona", "team-a-edgar", "edgar"),
    ]
    assert result.documents[1].spec["workspaceRef"] == {"name": "team-a-ops"}
    for document in result.documents:
        item = {"Workspace": remote.workspace, "Workflow": remote.workflows[0]}.get(
            document.kind, remote.personas[0]
        )
        no_drift(document, item, options)
    with pytest.raises(export.ExportError, match="name prefix"):
        export.export(remote, export.Options(name_prefix="Team_"))


def test_without_the_workspace_kind_children_name_the_remote_workspace() -> None:
    remote = export.Remote(
        workspace=platform_workspace(), workflows=[workflow_item()], personas=[persona_item()]
    )
    options = export.Options(
        kinds=export.parse_kinds(["workflows"]), connection_ref={"kind": "RunWhenConnection", "name": "rw"}
    )
    result = export.export(remote, options)
    [wf] = result.documents
    assert list(wf.spec)[:3] == ["workspaceName", "connectionRef", "adoptionPolicy"]
    assert wf.spec["workspaceName"] == "ops"
    assert wf.spec["connectionRef"] == {"kind": "RunWhenConnection", "name": "rw"}


def test_parse_kinds() -> None:
    assert export.parse_kinds([]) == frozenset(export.KINDS)
    assert export.parse_kinds(["workspace,Persona", "workflows"]) == frozenset(export.KINDS)
    assert export.parse_kinds(["personas"]) == {"Persona"}
    with pytest.raises(ValueError, match="unknown kind 'runs'"):
        export.parse_kinds(["runs"])


def test_output_is_ordered_commented_parseable_and_the_same_for_the_same_objects() -> None:
    workflows = [workflow_item("zeta"), workflow_item("alpha")]
    personas = [persona_item("bob", description="x" * 5000), persona_item("amy")]
    remote = export.Remote(workspace=platform_workspace(alias="Ops"), workflows=workflows, personas=personas)
    options = export.Options(namespace="team", workspace_body=platform.PlatformApi.workspace_body)
    text = export.render(export.export(remote, options), source='workspace "ops" at https://papi.example.com')
    shuffled = export.Remote(workspace=remote.workspace, workflows=workflows[::-1], personas=personas[::-1])
    assert (
        export.render(export.export(shuffled, options), source='workspace "ops" at https://papi.example.com')
        == text
    )
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Workspace", "ops"),
        ("Workflow", "alpha"),
        ("Workflow", "zeta"),
        ("Persona", "amy"),
        ("Persona", "bob"),
    ]
    assert all(d["metadata"]["namespace"] == "team" for d in documents)
    assert documents[1]["spec"]["definition"] == DEFINITION  # the long text and unicode survive YAML
    # Every document is a valid spec of its kind.
    models = {
        "Workspace": workspace.WorkspaceSpec,
        "Workflow": workflow.WorkflowSpec,
        "Persona": persona.PersonaSpec,
    }
    for d in documents:
        models[d["kind"]].model_validate(d["spec"])
    # The comment sits right above the object it is about, and the header says what is not included.
    bob = text.split("---\n")[-1]
    assert bob.startswith("# spec.description left out: the CRD cannot hold a string of 5000 characters")
    header = text.split("---\n")[0]
    assert header.startswith('# RunWhen objects exported from workspace "ops" at https://papi.example.com')
    assert "Not included:" in header
    assert all(len(line) <= 100 for line in text.splitlines() if line.startswith("#"))


# --- the command --------------------------------------------------------------------------------

TOKEN = "export-test-token-3f9c"
PASSWORD = "export-test-password-9a1e"


class Emulator:
    """The emulator served on a loopback port from a thread of its own, so that the command (which
    runs its own event loop) can be called as it is from a shell."""

    def __init__(self, which: str) -> None:
        self.dialect = which
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._stop: asyncio.Event | None = None
        ready = threading.Event()

        async def serve() -> None:
            self._stop = asyncio.Event()
            config = core.EmulatorConfig(port=0, dialect=which, api_token=TOKEN, password=PASSWORD)
            async with app.run_emulator(config) as url:
                self.url = url
                ready.set()
                await self._stop.wait()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(serve(),), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the emulator did not start"

    def run(self, make: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        async def call() -> Any:
            rw = client.RunWhenClient(self.url, auth.TokenCredentials(TOKEN))
            api = (platform.PlatformApi if self.dialect == "platform" else documented.DocumentedApi)(rw)
            try:
                return await make(api)
            finally:
                await rw.aclose()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)

    def close(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(params=["platform", "documented"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    served = Emulator(request.param)
    yield served
    served.close()


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNWHEN_URL", "RUNWHEN_USERNAME", "RUNWHEN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUNWHEN_TOKEN", TOKEN)


async def seed(api: Any) -> None:
    await api.new_workspace("ops", {"displayName": "Opérations ☃", "enabledLocations": ["loc-1"]})
    await api.new_child(dialect.WORKFLOW, "ops", {"name": "restart", "definition": DEFINITION})
    await api.new_child(
        dialect.PERSONA, "ops", {"name": "edgar", "fullName": "Eager Edgar", "filterStopWords": []}
    )


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["export", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    export_parser = sub.choices["export"]  # type: ignore[attr-defined]
    flags = [o for a in export_parser._actions for o in a.option_strings]
    assert "--connection-namespace" in flags
    assert "--kinds" in flags
    for flag in flags:
        assert flag in text, flag
    for action in export_parser._actions:
        assert action.help, action.option_strings
    for word in ("RUNWHEN_TOKEN", "RUNWHEN_USERNAME", "RUNWHEN_PASSWORD", "Exit status"):
        assert word in text


@pytest.mark.usefixtures("token_env")
def test_export_prints_the_workspace_the_same_twice(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    emulator.run(seed)
    assert cli.main(["export", "--url", emulator.url, "--workspace", "ops", "-n", "team"]) == 0
    first = capsys.readouterr()
    assert first.err == ""
    target = tmp_path / "ops.yaml"
    assert cli.main(["export", "--url", emulator.url, "-w", "ops", "-n", "team", "-o", str(target)]) == 0
    assert target.read_bytes() == first.out.encode()
    documents = [d for d in yaml.safe_load_all(first.out) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Workspace", "ops"),
        ("Workflow", "restart"),
        ("Persona", "edgar"),
    ]
    assert documents[0]["spec"]["displayName"] == "Opérations ☃"
    assert documents[2]["spec"] == {
        "workspaceRef": {"name": "ops"},
        "adoptionPolicy": "Adopt",
        "fullName": "Eager Edgar",
    }
    dialect_name = "Platform" if emulator.dialect == "platform" else "Documented"
    assert f"({dialect_name} API)" in first.out
    assert TOKEN not in first.out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "env", "status", "line"),
    [
        (["--url", "ftp://papi.example.com"], {}, 2, "bad URL 'ftp://papi.example.com'"),
        (["--url", "{url}"], {"RUNWHEN_TOKEN": "wrong-token"}, 1, "refused the credentials"),
        (
            ["--url", "{url}"],
            {"RUNWHEN_TOKEN": "", "RUNWHEN_USERNAME": "admin", "RUNWHEN_PASSWORD": "not-it"},
            1,
            "refused the credentials",
        ),
        (["--url", "{url}", "--workspace", "nowhere"], {}, 1, 'workspace "nowhere" not found at'),
        (["--url", "http://127.0.0.1:{free}"], {}, 1, "cannot use the RunWhen API at http://127.0.0.1:"),
        (["--url", "{url}"], {"RUNWHEN_TOKEN": ""}, 2, "set RUNWHEN_TOKEN, or RUNWHEN_USERNAME"),
        ([], {}, 2, "give one of --url"),
        (["--url", "{url}", "--kinds", "runs"], {}, 2, "unknown kind 'runs'"),
        (["--url", "{url}", "--name-prefix", "Team_"], {}, 2, 'name prefix "Team_" cannot start'),
        (
            ["--url", "{url}", "--connection-namespace", "x"],
            {},
            2,
            "--connection-namespace needs --connection",
        ),
    ],
    ids=[
        "bad-url",
        "bad-token",
        "bad-password",
        "missing-workspace",
        "unreachable",
        "no-credentials",
        "no-source",
        "bad-kind",
        "bad-prefix",
        "namespace-alone",
    ],
)
@pytest.mark.usefixtures("token_env")
def test_failures_are_one_line_on_stderr_and_a_non_zero_exit(
    emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    status: int,
    line: str,
) -> None:
    if emulator.dialect == "documented" and "{url}" not in " ".join(argv):
        pytest.skip("the same without a server")
    emulator.run(seed)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [a.format(url=emulator.url, free=_free_port()) for a in argv]
    if "--workspace" not in args:
        args += ["--workspace", "ops"]
    assert cli.main(["export", *args]) == status
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("runwhen-operator export: "), err
    assert line in err, err
    for secret in (TOKEN, PASSWORD, "wrong-token", "not-it"):
        assert secret not in err
