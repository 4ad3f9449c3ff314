"""Flux's and Argo CD's verdicts on an object, from their own libraries (hack/health-check).

`judge()` feeds objects to the hack/health-check binary, which computes kstatus
(sigs.k8s.io/cli-utils, what Flux's health checks use) and Argo CD's health assessment (gitops-engine's
`health.GetResourceHealth` with a Lua resource customization run by Argo CD's own `util/lua` VM). The
binary is built once from the Go module proxy by hack/build-health-check.sh and cached under
~/.cache/runwhen-operator/bin/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "hack" / "health-check"
BUILD_SCRIPT = ROOT / "hack" / "build-health-check.sh"
CACHE = Path(os.environ.get("RUNWHEN_CACHE_DIR", Path.home() / ".cache" / "runwhen-operator"))

# The helper's tests need only Go (the build fetches everything else from the Go module proxy).
needs_go = pytest.mark.skipif(
    shutil.which("go") is None, reason="Go is not installed: hack/health-check cannot be built"
)

Verdict = dict[str, Any]
Judge = Callable[..., list[Verdict]]


def _module_version(module: str) -> str:
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)", (SOURCE / "go.mod").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{module} is not required in {SOURCE / 'go.mod'}")
    return match.group(1)


def binary_path() -> Path:
    """Where hack/build-health-check.sh puts the binary for the versions in hack/health-check/go.mod."""
    argocd = _module_version("github.com/argoproj/argo-cd/v3")
    cli_utils = _module_version("sigs.k8s.io/cli-utils")
    return CACHE / "bin" / f"health-check-{argocd}-{cli_utils}"


def _digest() -> str:
    data = b"".join((SOURCE / name).read_bytes() for name in ("go.mod", "go.sum", "main.go"))
    return hashlib.sha256(data).hexdigest()


def ensure_health_check() -> Path:
    """The health-check binary, built (once, under the script's lock) if missing or out of date."""
    path = binary_path()
    stamp = path.with_name(path.name + ".sha256")
    if path.exists() and stamp.exists() and stamp.read_text().strip() == _digest():
        return path
    result = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    built = Path(result.stdout.strip().splitlines()[-1])
    if built != path:
        raise RuntimeError(f"{BUILD_SCRIPT} built {built}, expected {path}")
    return path


def judge(objects: list[dict[str, Any]], lua: str | None, use_open_libs: bool = False) -> list[Verdict]:
    """Each object's verdicts, in order: {"kstatus": {status, message, error}, "argocd": {...}}.

    `lua` is an Argo CD health script, applied as a resource customization for the objects' kind with
    `useOpenLibs: use_open_libs`; None leaves only Argo CD's built-in health checks, and an Argo CD
    status "" then means Argo CD has no health check for the kind (the resource has no health). A Lua
    error gives status Unknown with the error in "error". A line the helper cannot read gets {"error"}.
    """
    lines = "".join(
        json.dumps({"object": obj, "luaScript": lua or "", "useOpenLibs": use_open_libs}) + "\n"
        for obj in objects
    )
    result = subprocess.run(
        [str(ensure_health_check())], input=lines, capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"health-check exited with {result.returncode}: {result.stderr}")
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    if len(verdicts) != len(objects):
        raise RuntimeError(f"health-check answered {len(verdicts)} of {len(objects)}: {result.stderr}")
    return verdicts


@pytest.fixture(scope="session")
def health_judge() -> Judge:
    """`judge`, with the binary built before the first test that uses it."""
    if shutil.which("go") is None and not binary_path().exists():
        pytest.skip("Go is not installed: hack/health-check cannot be built")
    ensure_health_check()
    return judge
