#!/usr/bin/env python3
"""`make demo`: the operator end to end, then a clean teardown.

On a fresh machine it starts a local control plane (etcd + kube-apiserver) and the RunWhen API
emulator, installs the CRDs, runs the operator, applies `examples/`, waits until every object is
Ready, opens an issue on the emulator to show what the Workspace status mirrors, prints the
`kubectl get` table and tears everything down. The RunnerLocation turns Ready once a runner of its
location reports online: the emulator's control endpoint sends the heartbeat that runwhen-local's
runner would send after registering with the Secrets the operator wrote.

With a reachable cluster in KUBECONFIG and RUNWHEN_URL set (plus RUNWHEN_USERNAME/RUNWHEN_PASSWORD
or RUNWHEN_TOKEN), the same steps run against those instead; the example objects are deleted at the
end (the Workspace's deletionPolicy is Orphan, so the remote workspace stays) and the CRDs are kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import testenv

ROOT = testenv.ROOT
EXAMPLES = ROOT / "examples"
ORDER = ["cluster-connection.yaml", "workspace.yaml", "persona.yaml", "workflow.yaml", "runnerlocation.yaml"]
KINDS = ["workspaces", "workflows", "personas", "runnerlocations"]
GROUP = "platform.runwhen.com"


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


class Demo:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.control_plane: testenv.ControlPlane | None = None
        self.kubeconfig = ""
        self.kubectl = ""
        self.url = ""
        self.emulator_url = ""
        self.workdir = Path(tempfile.mkdtemp(prefix="runwhen-demo-"))
        self.external = bool(os.environ.get("RUNWHEN_URL")) and bool(os.environ.get("KUBECONFIG"))
        self.applied: list[Path] = []

    # -- helpers -----------------------------------------------------------------------------
    def k(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            check=check,
            text=True,
            capture_output=capture,
        )

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        log.close()
        self.procs.append(proc)
        return proc

    # -- steps -------------------------------------------------------------------------------
    def setup(self) -> None:
        _, kubectl = testenv.ensure_helm()
        self.kubectl = str(kubectl)
        if self.external:
            self.kubeconfig = os.environ["KUBECONFIG"]
            self.url = os.environ["RUNWHEN_URL"]
            say(f"using the cluster in KUBECONFIG and RunWhen at {self.url}")
        else:
            say("starting a local control plane (etcd + kube-apiserver)")
            self.control_plane = testenv.ControlPlane(workdir=ROOT / ".testenv" / "demo")
            self.control_plane.start()
            self.kubeconfig = str(self.control_plane.kubeconfig)
            say("starting the RunWhen API emulator")
            emu = self.spawn(
                "emulator",
                [
                    sys.executable,
                    "-m",
                    "runwhen_operator.emulator",
                    "--port",
                    "0",
                    "--run-step-seconds",
                    "0.5",
                ],
            )
            self.url = self.emulator_url = self._emulator_listening(emu)
        say("installing the CRDs")
        self.k("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"), capture=True)
        for plural in (*KINDS, "clusterrunwhenconnections", "runwhenconnections", "workflowruns"):
            self.k(
                "wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s", capture=True
            )

    def _emulator_listening(self, proc: subprocess.Popen[bytes]) -> str:
        log = self.workdir / "emulator.log"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            match = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
            if match:
                return match.group(1)
            if proc.poll() is not None:
                raise RuntimeError(f"the emulator exited:\n{log.read_text()}")
            time.sleep(0.1)
        raise TimeoutError("the emulator did not start")

    def run_operator(self) -> None:
        say("starting the operator")
        self.spawn(
            "operator",
            [
                sys.executable,
                "-m",
                "runwhen_operator",
                "run",
                "--all-namespaces",
                "--kubeconfig",
                self.kubeconfig,
                "--metrics-port",
                "0",
                "--health-port",
                "0",
            ],
        )

    def apply_examples(self) -> None:
        self.k("create", "namespace", "runwhen-system", check=False, capture=True)
        for name in ORDER:
            text = (EXAMPLES / name).read_text()
            if name == "cluster-connection.yaml":
                text = text.replace("url: http://127.0.0.1:8080", f"url: {self.url}")
                if self.external:
                    text = self._real_credentials(text)
            path = self.workdir / name
            path.write_text(text)
            say(f"applying examples/{name}")
            self.k("apply", "-f", str(path), capture=True)
            self.applied.append(path)

    @staticmethod
    def _real_credentials(text: str) -> str:
        token = os.environ.get("RUNWHEN_TOKEN")
        if token:
            creds = f"  token: {json.dumps(token)}\n"
        else:
            user, password = os.environ.get("RUNWHEN_USERNAME", ""), os.environ.get("RUNWHEN_PASSWORD", "")
            if not (user and password):
                raise SystemExit("set RUNWHEN_TOKEN, or RUNWHEN_USERNAME and RUNWHEN_PASSWORD")
            creds = f"  username: {json.dumps(user)}\n  password: {json.dumps(password)}\n"
        return re.sub(r"stringData:\n(?:  .*\n|  #.*\n)+", "stringData:\n" + creds, text, count=1)

    def wait_ready(self, timeout: float = 180.0, *, plurals: tuple[str, ...] = tuple(KINDS)) -> None:
        say("waiting until every object is Ready")
        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while time.monotonic() < deadline:
            pending = []
            for plural in ("clusterrunwhenconnections", *plurals):
                out = self.k("get", f"{plural}.{GROUP}", "-A", "-o", "json", capture=True).stdout
                for item in json.loads(out)["items"]:
                    conds = {c["type"]: c for c in (item.get("status") or {}).get("conditions", [])}
                    wanted = "Ready" if plural != "runnerlocations" or self.emulator_url else "Synced"
                    if conds.get(wanted, {}).get("status") != "True":
                        reason = conds.get(wanted, {}).get("reason", "no status yet")
                        pending.append(f"{item['kind']}/{item['metadata']['name']} ({reason})")
            if not pending:
                return
            time.sleep(1)
        raise TimeoutError(f"not Ready after {timeout}s: {', '.join(pending)}")

    def control(self, method: str, path: str, body: object) -> None:
        """A call to the emulator's control endpoints (``/_emulator/...``)."""
        import urllib.request

        req = urllib.request.Request(
            f"{self.emulator_url}/_emulator/{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10).close()

    def show_a_runner(self) -> None:
        """The RunnerLocation wrote the Secrets runwhen-local mounts and waits for its runner."""
        location = f"runnerlocations.{GROUP}/location-01"
        jsonpath = (
            "{.status.conditions[?(@.type=='Synced')].status} "
            "{.status.conditions[?(@.type=='Ready')].reason}: Secrets "
            "{.status.runnerTokenSecret} and {.status.uploadInfoSecret}"
        )
        deadline = time.monotonic() + 60
        out = ""
        while time.monotonic() < deadline:
            out = self.k("get", location, "-n", "default", "-o", f"jsonpath={jsonpath}", capture=True).stdout
            if out.startswith("True ") and "uploadinfo" in out:
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"the RunnerLocation did not write its Secrets ({out})")
        say(f"RunnerLocation location-01 wrote its Secrets and waits for a runner ({out[5:].strip()})")
        if not self.emulator_url:
            say("install runwhen-local with those Secrets (docs/runner.md) to see it Ready")
            return
        say(
            "simulating the runner: the emulator's control endpoint sends the heartbeat that "
            "runwhen-local's runner would send for location-01"
        )
        self.control("POST", "workspaces/demo/runners/location-01/heartbeat", {"health": "online"})
        # Look now rather than at the next check (every 30 s while no runner is online).
        self.k(
            "annotate",
            location,
            "-n",
            "default",
            f"{GROUP}/reconcile-requested-at={time.time()}",
            "--overwrite",
            capture=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.k(
                "get",
                location,
                "-n",
                "default",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}/{.status.health}",
                capture=True,
            ).stdout
            if out.strip() == "True/online":
                say("RunnerLocation location-01 is Ready: its runner reports online")
                return
            time.sleep(0.5)
        raise TimeoutError(f"the runner's heartbeat never reached the RunnerLocation status ({out})")

    def show_an_issue(self) -> None:
        if not self.emulator_url:
            return
        say("a critical issue opens: the Workspace status mirrors it beside its runner's health")
        self.control(
            "POST",
            "workspaces/demo/issues",
            {"title": "Pods crash-looping in checkout", "severity": 1, "slxName": "k8s-deployment-health"},
        )
        self.k(
            "annotate",
            f"workspaces.{GROUP}/demo",
            "-n",
            "default",
            f"{GROUP}/reconcile-requested-at={time.time()}",
            "--overwrite",
            capture=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            out = self.k(
                "get",
                f"workspaces.{GROUP}/demo",
                "-n",
                "default",
                "-o",
                "jsonpath={.status.openIssues.count}/{.status.health.state}",
                capture=True,
            ).stdout
            if out.strip() == "1/Healthy":
                return
            time.sleep(1)
        raise TimeoutError(f"the runner and the open issue never reached the Workspace status ({out})")

    def show(self) -> None:
        say("kubectl get runwhen -A")
        self.k("get", "runwhen", "-A")

    def teardown(self) -> None:
        if self.external:
            for path in reversed(self.applied):
                self.k(
                    "delete",
                    "-f",
                    str(path),
                    "--ignore-not-found",
                    "--wait=true",
                    "--timeout=60s",
                    check=False,
                )
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.control_plane is not None:
            self.control_plane.stop(remove_data=True)
            shutil.rmtree(self.control_plane.workdir, ignore_errors=True)

    def dump_logs(self) -> None:
        for log in sorted(self.workdir.glob("*.log")):
            print(f"--- {log.name} (last lines) ---", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)


def main() -> int:
    demo = Demo()
    started = time.monotonic()
    try:
        demo.setup()
        demo.run_operator()
        demo.apply_examples()
        demo.wait_ready(plurals=tuple(k for k in KINDS if k != "runnerlocations"))
        demo.show_a_runner()
        demo.wait_ready()
        say(f"all Ready {time.monotonic() - started:.1f}s after start")
        demo.show_an_issue()
        demo.show()
        say(f"everything Ready in {time.monotonic() - started:.1f}s; tearing down")
        return 0
    except BaseException:
        demo.dump_logs()
        raise
    finally:
        demo.teardown()
        shutil.rmtree(demo.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
