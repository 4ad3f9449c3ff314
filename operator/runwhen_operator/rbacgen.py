"""The operator's RBAC rules on its own kinds, generated from the kind registry (``api/kinds.py``).

Two files hold them: the plain manifests' ClusterRole (``deploy/rbac/cluster_role.yaml``, between
two marker comments) and the Helm chart's helpers (``charts/.../_helpers.tpl``, the bodies of the
``namespacedKindRules`` and ``clusterKindRules`` templates, shared by its ClusterRole and Roles).
``runwhen-operator crds --write`` rewrites both; a test checks they are what the registry says, so a
new kind gets its RBAC from its ``KindInfo`` alone.
"""

from __future__ import annotations

from pathlib import Path

from runwhen_operator.api import common, kinds

__all__ = [
    "CHART_HELPERS",
    "CLUSTER_ROLE",
    "check",
    "kind_rules",
    "render_chart_helpers",
    "render_cluster_role",
    "write",
]

CLUSTER_ROLE = Path("deploy/rbac/cluster_role.yaml")
CHART_HELPERS = Path("charts/runwhen-operator/templates/_helpers.tpl")
BEGIN = (
    "# --- rules on the operator's kinds: generated from api/kinds.py by `runwhen-operator crds --write` ---"
)
END = "# --- end of the generated rules ---"
STATUS_VERBS = ("get", "patch", "update")
FINALIZER_VERBS = ("update",)
_CHART_TEMPLATES = {True: "runwhen-operator.namespacedKindRules", False: "runwhen-operator.clusterKindRules"}

Rule = tuple[tuple[str, ...], tuple[str, ...]]  # (resources, verbs)


def kind_rules(*, namespaced: bool) -> list[Rule]:
    """The rules for the namespaced kinds (or the cluster-scoped ones), in registry order: the
    objects (kinds with the same verbs share a rule), their status, their finalizers."""
    chosen = [k for k in kinds.KINDS if k.namespaced == namespaced]
    rules: list[Rule] = []
    by_verbs: dict[tuple[str, ...], list[str]] = {}
    for info in chosen:
        by_verbs.setdefault(info.verbs, []).append(info.plural)
    rules += [(tuple(plurals), verbs) for verbs, plurals in by_verbs.items()]
    rules.append((tuple(f"{k.plural}/status" for k in chosen), STATUS_VERBS))
    rules.append((tuple(f"{k.plural}/finalizers" for k in chosen), FINALIZER_VERBS))
    return rules


def _flow(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _render(rules: list[Rule], indent: str) -> str:
    lines = []
    for resources, verbs in rules:
        lines.append(f'{indent}- apiGroups: ["{common.GROUP}"]')
        if len(resources) == 1:
            lines.append(f"{indent}  resources: {_flow(resources)}")
        else:
            lines.append(f"{indent}  resources:")
            lines.extend(f"{indent}    - {resource}" for resource in resources)
        lines.append(f"{indent}  verbs: {_flow(verbs)}")
    return "\n".join(lines) + "\n"


def _replace_between(text: str, begin: str, end: str, body: str, where: Path) -> str:
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        raise ValueError(f"{where}: the markers of the generated rules are missing ({begin!r} ... {end!r})")
    head = text[: start + len(begin)]
    return head + "\n" + body + text[stop:]


def render_cluster_role(current: str) -> str:
    """``current`` (the ClusterRole's text) with the generated rules between its markers."""
    body = _render(kind_rules(namespaced=False) + kind_rules(namespaced=True), "  ")
    return _replace_between(current, f"  {BEGIN}", f"  {END}", body, CLUSTER_ROLE)


def render_chart_helpers(current: str) -> str:
    """``current`` (the chart's helpers) with the bodies of the two kind-rule templates generated."""
    text = current
    for namespaced, name in _CHART_TEMPLATES.items():
        begin = f'{{{{- define "{name}" -}}}}'
        text = _replace_between(
            text, begin, "{{- end }}", _render(kind_rules(namespaced=namespaced), ""), CHART_HELPERS
        )
    return text


_RENDERERS = ((CLUSTER_ROLE, render_cluster_role), (CHART_HELPERS, render_chart_helpers))


def write(root: Path) -> list[Path]:
    """Rewrite the rules in both files under ``root`` (those of them that exist) where they differ;
    returns their paths."""
    written = []
    for relative, render in _RENDERERS:
        path = root / relative
        if not path.exists():
            continue
        current = path.read_text()
        wanted = render(current)
        if current != wanted:
            path.write_text(wanted)
        written.append(path)
    return written


def check(root: Path) -> list[Path]:
    """The files under ``root`` that are missing or whose rules are not what the registry generates."""
    stale = []
    for relative, render in _RENDERERS:
        path = root / relative
        if not path.exists() or path.read_text() != render(path.read_text()):
            stale.append(path)
    return stale
