"""A soak under a hostile RunWhen: one connection goes through a misbehaving reverse proxy, another
(the `default` ClusterRunWhenConnection) straight to a healthy emulator, both served by one operator.

The hostile connection's emulator issues short-lived access tokens and refresh tokens that are never
usable, so the connection logs in (``POST /api/v3/token/``) about every 18 s and the token
misbehaviours meet real logins. After a healthy baseline of requests/min through the proxy, the
proxy answers 403 on the personas path, hands out expired and garbage tokens, 50 MiB bodies, answers
trickling one byte every 2 s, ``Retry-After: 999999`` and a workspace create answered with another
name, one at a time. Throughout: bounded requests and logins per minute, bounded operator RSS, the
healthy connection's changes reach RunWhen within 30 s in every phase, each misbehaviour's specific
promise holds, the hostile objects recover once it is switched off, and deleting everything leaves
nothing behind.

The proxy itself is checked first, directly (each misbehaviour does what it says).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from runwhen_operator.cli import build_parser
from tests.support.emulator import EmulatorProcess
from tests.support.hostile import FORBIDDEN_DETAIL, HUGE_BODY_BYTES, HostileProxy
from tests.support.operator import OperatorProcess, RunWhenEnv, wait_for
from tests.support.remote import Remote

pytestmark = [pytest.mark.integration]

# Operator settings.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
REQUEST_DEADLINE = 10.0
MAX_RETRY_AFTER = 30.0
MAX_LOGINS_PER_MINUTE = 6
PASS_DEADLINE = 30.0
LIMIT_FLAGS = {
    "--max-response-bytes": str(MAX_RESPONSE_BYTES),
    "--request-deadline": f"{REQUEST_DEADLINE:g}s",
    "--max-retry-after": f"{MAX_RETRY_AFTER:g}s",
    "--max-logins-per-minute": str(MAX_LOGINS_PER_MINUTE),
    "--pass-deadline": f"{PASS_DEADLINE:g}s",
}
BASE_FLAGS = ("--poll-interval", "10s", "--connection-check-interval", "5s")

# Timing.
BASELINE_SECONDS = 30.0
PHASE_SECONDS = 25.0
HEALTHY_CONVERGENCE = 30.0  # a healthy change reaches RunWhen within this, whatever the proxy does
RECOVERY_MARGIN = 30.0
RECOVERY = 60.0  # hostile objects Ready again after the misbehaviours are switched off
SETTLE = 60.0  # after a missed recovery: how much longer to wait before the next phase
TOKEN_LIFETIME = 20.0

# Bounds.
REQUESTS_FACTOR = 5.0
# A baseline of an idle connection can be a handful of requests a minute; five times that would
# forbid even the few retries any failure costs, so the bound is taken from at least this rate.
REQUESTS_FLOOR = 20.0
MAX_LOGINS_PER_MINUTE_SEEN = 12
MAX_RSS_MB = 300.0

# Objects.
HOSTILE = "hostile"
HOSTILE_REF = {"kind": "RunWhenConnection", "name": HOSTILE}
HOSTILE_WS = "hostile"
LATE_WS = "hostile-late"
DECOY = "decoy"
HEALTHY_WS = "healthy"
N_HOSTILE = 3
N_HEALTHY = 2
PERSONAS_PATH = rf"^/api/v[34]/workspaces/{HOSTILE_WS}/personas"


def definition(i: int) -> dict[str, Any]:
    return {
        "fromActivities": [
            {
                "name": "on-alert",
                "match": {"activityVerbs": ["alert"], "slxs": [f"slx-{i}"]},
                "actions": [{"tasks": {"slx": f"slx-{i}", "titles": ["Check"], "sessionTTL": "20m"}}],
            }
        ]
    }


@pytest.fixture
def hostile_proxy() -> Iterator[Callable[..., HostileProxy]]:
    """``factory(upstream_url, **kwargs)``: a started HostileProxy, stopped after the test."""
    started: list[HostileProxy] = []

    def factory(upstream: str, **kwargs: Any) -> HostileProxy:
        proxy = HostileProxy(upstream, **kwargs).start()
        started.append(proxy)
        return proxy

    yield factory
    for proxy in started:
        proxy.stop()


# --- the proxy on its own ---------------------------------------------------------------------------


def _login(http: httpx.Client, emulator: EmulatorProcess) -> httpx.Response:
    return http.post("/api/v3/token/", json={"username": emulator.username, "password": emulator.password})


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def test_proxy_forwards_and_counts(
    emulator: EmulatorProcess, hostile_proxy: Callable[..., HostileProxy]
) -> None:
    proxy = hostile_proxy(emulator.url)
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        started = time.monotonic()
        token = _login(http, emulator).json()["access"]
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get("/api/v3/workspaces").status_code == 401  # headers go through: none, none
        created = http.post("/api/v3/workspaces", headers=auth, json={"name": "through"})
        assert created.status_code == 201, created.text
        assert created.json()["name"] == "through"
        listed = http.get("/api/v3/workspaces", headers=auth, params={"page_size": 1, "page": 1})
        assert listed.status_code == 200, listed.text
        assert [w["name"] for w in listed.json()["results"]] == ["through"]
        ended = time.monotonic()
    assert [w["name"] for w in emulator.live("workspaces")] == ["through"]
    hits = proxy.hits(started, ended)
    assert [(h.method, h.path, h.status) for h in hits] == [
        ("POST", "/api/v3/token/", 200),
        ("GET", "/api/v3/workspaces", 401),
        ("POST", "/api/v3/workspaces", 201),
        ("GET", "/api/v3/workspaces", 200),
    ]
    assert hits[-1].query in ("page_size=1&page=1", "page=1&page_size=1")
    assert [h.path for h in proxy.logins()] == ["/api/v3/token/"]
    assert proxy.per_minute(started, started + 60) == 4.0
    assert proxy.max_in_window(60, logins=True) == 1


def test_proxy_misbehaviours(emulator: EmulatorProcess, hostile_proxy: Callable[..., HostileProxy]) -> None:
    proxy = hostile_proxy(emulator.url)
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        auth = {"Authorization": f"Bearer {_login(http, emulator).json()['access']}"}
        http.post("/api/v3/workspaces", headers=auth, json={"name": "ws"})

        with proxy.misbehaving("forbidden", path=r"/personas"):
            denied = http.get("/api/v4/workspaces/ws/personas", headers=auth)
            assert denied.status_code == 403
            assert denied.json() == {"detail": FORBIDDEN_DETAIL}
            assert http.get("/api/v4/workspaces/ws/workflows", headers=auth).status_code == 200

        with proxy.misbehaving("expired_token"):
            answer = _login(http, emulator).json()
            claims = _claims(answer["access"])
            now = time.time()
            assert now - 65 < claims["exp"] < now - 55, claims
            assert now - 125 < claims["iat"] < now - 115, claims
            assert answer["refresh"]  # only the access token is touched
            refused = http.get("/api/v3/workspaces", headers={"Authorization": f"Bearer {answer['access']}"})
            assert refused.status_code == 401

        with proxy.misbehaving("garbage_token"):
            answers = [_login(http, emulator) for _ in range(2)]
            assert [a.status_code for a in answers] == [200, 200]
            bodies = sorted(a.text for a in answers)
            assert json.loads(bodies[1]) == {"access": 42}
            assert bodies[0].startswith("<!DOCTYPE html>")

        with proxy.misbehaving("retry_after"):
            throttled = http.get("/api/v3/workspaces", headers=auth)
            assert throttled.status_code == 429
            assert throttled.headers["Retry-After"] == "999999"

        with proxy.misbehaving("wrong_identity", name=DECOY):
            created = http.post("/api/v3/workspaces", headers=auth, json={"name": "mine"})
            assert created.status_code == 201
            assert created.json()["name"] == DECOY
        assert sorted(w["name"] for w in emulator.live("workspaces")) == ["mine", "ws"]

        with proxy.misbehaving("huge_body"):
            assert http.post("/api/v3/token/", json={"username": "x"}).status_code == 401  # GETs only
            framing = set()
            for _ in range(2):
                with http.stream("GET", "/api/v3/workspaces", headers=auth) as streamed:
                    framing.add(
                        streamed.headers.get("content-length") or streamed.headers["transfer-encoding"]
                    )
                    size = sum(len(chunk) for chunk in streamed.iter_raw())
                assert size > HUGE_BODY_BYTES
            assert "chunked" in framing
            assert len(framing) == 2
        with proxy.misbehaving("huge_body", size=1000):
            assert len(http.get("/api/v3/workspaces", headers=auth).json()["padding"]) == 1000

        with proxy.misbehaving("trickle"):
            asked = time.monotonic()
            with http.stream("GET", "/api/v3/workspaces", headers=auth) as trickling:
                assert trickling.status_code == 200
                assert time.monotonic() - asked < 1.0  # the headers at once
                chunks = trickling.iter_raw()
                assert next(chunks) == b" "
                assert next(chunks) == b" "
                assert 1.5 < time.monotonic() - asked < 3.5  # then a byte every 2 s
                assert proxy.streams == 1
        wait_for(lambda: proxy.streams == 0, 5, "the proxy to notice the client left")
    assert set(proxy.active()) == set()


# --- the soak ---------------------------------------------------------------------------------------


class RssSampler:
    """VmRSS of a process, read from /proc every second in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _field(self, name: str) -> float | None:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        found = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
        return int(found.group(1)) / 1024 if found else None

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._field("VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(1.0)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak_since_start(self) -> float | None:
        """VmHWM: the highest RSS the process ever had, between samples too."""
        return self._field("VmHWM")

    def max(self, start: float | None = None, end: float | None = None) -> float:
        values = [
            rss for at, rss in self.samples if (start is None or at >= start) and (end is None or at < end)
        ]
        return max(values, default=0.0)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


@dataclass
class Figures:
    phase: str
    seconds: float
    requests: int
    requests_per_minute: float
    logins: int
    logins_per_minute: float
    peak_logins_60s: int
    max_rss_mb: float
    healthy_seconds: float | None
    recovery_seconds: float | None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        secs = _seconds
        notes = f"  [{'; '.join(self.notes)}]" if self.notes else ""
        return (
            f"{self.phase:<15} {self.seconds:5.1f}s  requests {self.requests:4d} "
            f"({self.requests_per_minute:6.1f}/min)  logins {self.logins:2d} "
            f"({self.logins_per_minute:4.1f}/min, peak {self.peak_logins_60s}/60s)  "
            f"RSS max {self.max_rss_mb:6.1f} MB  healthy {secs(self.healthy_seconds)}  "
            f"recovered {secs(self.recovery_seconds)}{notes}"
        )


def _ready(obj: dict[str, Any]) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            current = cond.get("observedGeneration") in (None, obj["metadata"].get("generation"))
            return bool(current and cond.get("status") == "True")
    return False


class Soak:
    def __init__(
        self,
        rw: RunWhenEnv,
        hostile: EmulatorProcess,
        proxy: HostileProxy,
        operator: OperatorProcess,
        rss: RssSampler,
    ) -> None:
        self.rw = rw
        self.hostile = hostile
        self.proxy = proxy
        self.operator = operator
        self.rss = rss
        self.violations: list[str] = []
        self.figures: list[Figures] = []
        self.full_names: dict[str, str] = {f"hp-{i}": f"Hostile persona {i}" for i in range(N_HOSTILE)}
        self.late = False
        self.baseline = 0.0

    # -- bookkeeping ---------------------------------------------------------------------------
    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.violations.append(what)
            print(f"    VIOLATION: {what}", flush=True)
        return ok

    def alive(self) -> None:
        proc = self.operator.proc
        if proc is not None and proc.poll() is not None:
            self.violations.append(f"the operator exited with {proc.returncode}")
            pytest.fail("; ".join(self.violations) + "\n" + self.operator.logs()[-6000:])

    # -- objects ---------------------------------------------------------------------------------
    def hostile_objects(self) -> list[tuple[str, str]]:
        objects = [("RunWhenConnection", HOSTILE), ("Workspace", HOSTILE_WS)]
        objects += [("Workflow", f"hwf-{i}") for i in range(N_HOSTILE)]
        objects += [("Persona", f"hp-{i}") for i in range(N_HOSTILE)]
        if self.late:
            objects.append(("Workspace", LATE_WS))
        return objects

    def healthy_objects(self) -> list[tuple[str, str]]:
        objects = [("Workspace", HEALTHY_WS)]
        objects += [("Workflow", f"wf-{i}") for i in range(N_HEALTHY)]
        objects += [("Persona", f"p-{i}") for i in range(N_HEALTHY)]
        return objects

    def not_converged(self) -> list[str]:
        """What of the hostile side is not as its specs say (empty: all of it is)."""
        missing = [f"{k}/{n} not Ready" for k, n in self.hostile_objects() if not _ready(self.rw.get(k, n))]
        remote = {p["name"]: p for p in self.hostile.live("personas") if p.get("workspace") == HOSTILE_WS}
        for name, full_name in self.full_names.items():
            got = (remote.get(name) or {}).get("fullName")
            if got != full_name:
                missing.append(f"remote persona {name} has fullName {got!r}, not {full_name!r}")
        if self.late:
            status = self.rw.get("Workspace", LATE_WS).get("status") or {}
            if status.get("remoteName") != LATE_WS:
                missing.append(f"Workspace/{LATE_WS} records remoteName {status.get('remoteName')!r}")
        return missing

    def unready(self) -> dict[str, str]:
        """The hostile objects not Ready, with their Ready reason."""
        found: dict[str, str] = {}
        for kind, name in self.hostile_objects():
            obj = self.rw.get(kind, name)
            if not _ready(obj):
                conditions = (obj.get("status") or {}).get("conditions") or []
                ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
                found[f"{kind}/{name}"] = str(ready.get("reason"))
        return found

    def patch_healthy(self, value: str) -> None:
        self.rw.patch("Persona", "p-0", {"spec": {"fullName": value}})
        self.rw.patch("Workspace", HEALTHY_WS, {"spec": {"displayName": value}})

    def healthy_shows(self, value: str) -> bool:
        persona = next((p for p in self.rw.remote("personas", HEALTHY_WS) if p["name"] == "p-0"), {})
        workspace = self.rw.remote_workspace(HEALTHY_WS) or {}
        return persona.get("fullName") == value and workspace.get("displayName") == value

    def patch_hostile(self, name: str, value: str) -> None:
        self.full_names[name] = value
        self.rw.patch("Persona", name, {"spec": {"fullName": value}})

    def settle(self, tag: str) -> float | None:
        """Ask every managed hostile object for a reconcile and wait until each says it handled it
        (``status.lastHandledReconcileAt``, written only by a pass that succeeded): the next phase
        starts from objects whose last pass succeeded, so the growing delays one phase's failures
        built up (kept until a pass succeeds, as a controller's rate limiter keeps them) are not
        measured as the next phase's recovery."""
        managed = [(k, n) for k, n in self.hostile_objects() if k != "RunWhenConnection"]
        for kind, name in managed:
            self.rw.annotate(kind, name, {"platform.runwhen.com/reconcile-requested-at": tag})
        started = time.monotonic()
        while time.monotonic() - started < RECOVERY:
            self.alive()
            handled = [
                (self.rw.get(k, n).get("status") or {}).get("lastHandledReconcileAt") for k, n in managed
            ]
            if all(value == tag for value in handled):
                return time.monotonic() - started
            time.sleep(0.5)
        return None

    def wait_recovered(self, timeout: float) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.alive()
            if not self.not_converged():
                return time.monotonic() - started
            time.sleep(0.5)
        return None

    # -- phases ----------------------------------------------------------------------------------
    def measure_baseline(self) -> None:
        start = time.monotonic()
        value = "Healthy baseline"
        self.patch_healthy(value)
        healthy = None
        while time.monotonic() - start < BASELINE_SECONDS:
            self.alive()
            if healthy is None and self.healthy_shows(value):
                healthy = time.monotonic() - start
            time.sleep(0.5)
        end = time.monotonic()
        self.baseline = self.proxy.per_minute(start, end)
        self.record("baseline", start, end, healthy, 0.0, [])
        self.check(
            healthy is not None and healthy <= HEALTHY_CONVERGENCE,
            f"baseline: the healthy change took {healthy}s",
        )

    def phase(
        self,
        name: str,
        path: str | None = None,
        *,
        options: dict[str, Any] | None = None,
        hostile_patch: str | None = None,
        setup: Callable[[], None] | None = None,
        during: Callable[[], None] | None = None,
        after: Callable[[list[str]], None] | None = None,
        recovery: float = RECOVERY,
    ) -> None:
        print(f"-- {name} on {path or 'its default scope'}", flush=True)
        notes: list[str] = []
        start = time.monotonic()
        self.proxy.switch_on(name, path, **(options or {}))
        value = f"Healthy during {name}"
        self.patch_healthy(value)
        if hostile_patch is not None:
            self.patch_hostile(hostile_patch, f"Hostile during {name}")
        if setup is not None:
            setup()
        healthy: float | None = None
        while True:
            self.alive()
            elapsed = time.monotonic() - start
            if healthy is None and self.healthy_shows(value):
                healthy = time.monotonic() - start
            if during is not None:
                during()
            if elapsed >= PHASE_SECONDS and (healthy is not None or elapsed >= HEALTHY_CONVERGENCE):
                break
            time.sleep(0.5)
        end = time.monotonic()
        unready = self.unready()
        self.proxy.switch_off(name)
        if unready:
            notes.append(f"not Ready at switch-off: {unready}")
        self.check(
            healthy is not None and healthy <= HEALTHY_CONVERGENCE,
            f"{name}: the healthy connection's change did not reach RunWhen within "
            f"{HEALTHY_CONVERGENCE:g}s (took {healthy})",
        )
        streams_at_end = self.proxy.streams
        recovered = self.wait_recovered(recovery)
        if recovered is None:
            self.check(
                False, f"{name}: hostile side not recovered {recovery:g}s after: {self.not_converged()}"
            )
            # The next phase starts from a converged hostile side if it gets there at all, so that
            # what it measures is its own.
            late = self.wait_recovered(SETTLE)
            notes.append(
                f"converged {recovery + late:.1f}s after switch-off"
                if late is not None
                else f"still not converged {recovery + SETTLE:g}s after switch-off"
            )
        if streams_at_end:
            notes.append(
                f"{streams_at_end} answers still streaming at switch-off, {self.proxy.streams} after"
            )
        if after is not None:
            after(notes)
        settled = self.settle(f"after {name}")
        self.check(settled is not None, f"{name}: a requested reconcile did not succeed within {RECOVERY:g}s")
        notes.append(f"settled {settled:.1f}s" if settled is not None else "not settled")
        self.record(name, start, end, healthy, recovered, notes)

    def record(
        self,
        name: str,
        start: float,
        end: float,
        healthy: float | None,
        recovered: float | None,
        notes: list[str],
    ) -> Figures:
        figures = Figures(
            phase=name,
            seconds=end - start,
            requests=len(self.proxy.hits(start, end)),
            requests_per_minute=self.proxy.per_minute(start, end),
            logins=len(self.proxy.logins(start, end)),
            logins_per_minute=self.proxy.per_minute(start, end, logins=True),
            peak_logins_60s=self.proxy.max_in_window(60, logins=True, start=start, end=end),
            max_rss_mb=self.rss.max(start, end),
            healthy_seconds=healthy,
            recovery_seconds=recovered,
            notes=notes,
        )
        self.figures.append(figures)
        print("   ", figures.line(), flush=True)
        bound = REQUESTS_FACTOR * max(self.baseline, REQUESTS_FLOOR)
        if name != "baseline":
            self.check(
                figures.requests_per_minute <= bound,
                f"{name}: {figures.requests_per_minute:.1f} requests/min to the proxy, more than "
                f"{REQUESTS_FACTOR:g} x max(baseline {self.baseline:.1f}, {REQUESTS_FLOOR:g}) = {bound:.1f}",
            )
        self.check(
            figures.peak_logins_60s <= MAX_LOGINS_PER_MINUTE_SEEN,
            f"{name}: {figures.peak_logins_60s} logins within 60 s (at most {MAX_LOGINS_PER_MINUTE_SEEN})",
        )
        self.check(
            figures.max_rss_mb < MAX_RSS_MB,
            f"{name}: operator RSS reached {figures.max_rss_mb:.1f} MB (under {MAX_RSS_MB:g} MB)",
        )
        return figures


def _missing_flags() -> list[str]:
    parser = build_parser()
    missing = []
    for flag, value in LIMIT_FLAGS.items():
        _, unknown = parser.parse_known_args(["run", flag, value])
        if flag in unknown:
            missing.append(flag)
    return missing


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_soak_behind_a_hostile_proxy(
    rw: RunWhenEnv,
    emulator_factory: Callable[..., EmulatorProcess],
    hostile_proxy: Callable[..., HostileProxy],
) -> None:
    test_started = time.monotonic()
    hostile = emulator_factory(
        username="hostile",
        password="hostile-password",
        token_lifetime=TOKEN_LIFETIME,
        extra_args=["--refresh-token-lifetime", "5"],  # never usable: every renewal is a login
    )
    proxy = hostile_proxy(hostile.url)
    Remote(hostile).create_workspace(DECOY)  # another's workspace, on the hostile side

    rw.secret(f"{HOSTILE}-credentials", {"username": hostile.username, "password": hostile.password})
    rw.apply(
        "RunWhenConnection",
        HOSTILE,
        {"url": proxy.url, "credentialsSecretRef": {"name": f"{HOSTILE}-credentials"}},
    )
    violations: list[str] = []
    missing = _missing_flags()
    if missing:
        violations.append(f"the operator has no {', '.join(missing)} (started without them)")
    flags = [item for flag, value in LIMIT_FLAGS.items() if flag not in missing for item in (flag, value)]
    operator = rw.start_operator(*BASE_FLAGS, *flags)
    assert operator.proc is not None
    rss = RssSampler(operator.proc.pid).start()
    soak = Soak(rw, hostile, proxy, operator, rss)
    soak.violations.extend(violations)
    try:
        _run(soak)
    finally:
        rss.stop()
        peak = rss.peak_since_start()
        print("\n== figures ==")
        print(
            f"baseline {soak.baseline:.1f} requests/min through the proxy; request bound "
            f"{REQUESTS_FACTOR * max(soak.baseline, REQUESTS_FLOOR):.1f}/min"
        )
        for figures in soak.figures:
            print(figures.line())
        print(f"max sampled RSS {rss.max():.1f} MB, VmHWM {peak} MB")
        print(f"whole test {time.monotonic() - test_started:.0f}s")
        print(f"violations ({len(soak.violations)}):")
        for violation in soak.violations:
            print(f"  - {violation}")
    if peak is not None:
        soak.check(peak < MAX_RSS_MB, f"operator peak RSS (VmHWM) {peak:.1f} MB (under {MAX_RSS_MB:g} MB)")
    assert not soak.violations, "\n".join(soak.violations)


def _run(soak: Soak) -> None:
    rw = soak.rw
    parent = {"connectionRef": HOSTILE_REF, "workspaceRef": {"name": HOSTILE_WS}}
    rw.apply("Workspace", HOSTILE_WS, {"connectionRef": HOSTILE_REF, "deletionPolicy": "Delete"})
    for i in range(N_HOSTILE):
        rw.apply("Workflow", f"hwf-{i}", {**parent, "definition": definition(i)})
        rw.apply("Persona", f"hp-{i}", {**parent, "fullName": soak.full_names[f"hp-{i}"]})
    rw.apply("Workspace", HEALTHY_WS, {"deletionPolicy": "Delete"})
    for i in range(N_HEALTHY):
        rw.apply("Workflow", f"wf-{i}", {"workspaceRef": {"name": HEALTHY_WS}, "definition": definition(i)})
        rw.apply("Persona", f"p-{i}", {"workspaceRef": {"name": HEALTHY_WS}, "fullName": f"Persona {i}"})
    for kind, name in soak.hostile_objects() + soak.healthy_objects():
        rw.wait_condition(kind, name, timeout=90)
    print(f"\nall Ready; hostile via {soak.proxy.url}", flush=True)

    soak.measure_baseline()

    # 403 on the personas path of the hostile workspace only.
    seen: dict[str, Any] = {}
    workflows_unready: set[str] = set()

    def forbidden_during() -> None:
        for cond in (rw.get("Persona", "hp-0").get("status") or {}).get("conditions") or []:
            message = str(cond.get("message") or "")
            if FORBIDDEN_DETAIL in message and f"/workspaces/{HOSTILE_WS}/personas" in message:
                seen.setdefault("condition", cond)
        for i in range(N_HOSTILE):
            if not _ready(rw.get("Workflow", f"hwf-{i}")):
                workflows_unready.add(f"hwf-{i}")

    def forbidden_after(notes: list[str]) -> None:
        cond = seen.get("condition")
        soak.check(
            cond is not None,
            "forbidden: Persona hp-0 got no condition naming the personas path and the server's detail "
            f"(its conditions: {(rw.get('Persona', 'hp-0').get('status') or {}).get('conditions')})",
        )
        if cond is not None:
            notes.append(f"hp-0 {cond['type']}={cond['status']} {cond.get('reason')}: {cond.get('message')}")
        soak.check(
            not workflows_unready, f"forbidden: workflows lost Ready on a personas 403: {workflows_unready}"
        )

    soak.phase(
        "forbidden",
        PERSONAS_PATH,
        hostile_patch="hp-0",
        during=forbidden_during,
        after=forbidden_after,
    )
    soak.phase("expired_token", hostile_patch="hp-1")
    soak.phase("garbage_token", hostile_patch="hp-2")

    def huge_after(notes: list[str]) -> None:
        huge = [h for h in soak.proxy.hits() if h.misbehaviour == "huge_body"]
        sent = sorted({round(h.sent_bytes / 2**20, 1) for h in huge})
        notes.append(f"{len(huge)} huge answers, MiB sent each: {sent}")

    soak.phase("huge_body", hostile_patch="hp-0", after=huge_after)

    def trickle_after(notes: list[str]) -> None:
        trickles = [h for h in soak.proxy.hits() if h.misbehaviour == "trickle"]
        held = [round((h.done_at or time.monotonic()) - h.at, 1) for h in trickles]
        notes.append(f"{len(trickles)} trickling answers, held {sorted(held)[-5:]}s (longest 5)")

    # Trickling on every path of the hostile connection: it is the healthy one that must converge,
    # and the hostile one must recover within a request's deadline (and a margin) afterwards.
    soak.phase(
        "trickle",
        hostile_patch="hp-1",
        after=trickle_after,
        recovery=REQUEST_DEADLINE + RECOVERY_MARGIN,
    )
    soak.phase("retry_after", hostile_patch="hp-2", recovery=MAX_RETRY_AFTER + RECOVERY_MARGIN)

    recorded: set[str] = set()

    def late_workspace() -> None:
        soak.late = True
        rw.apply("Workspace", LATE_WS, {"connectionRef": HOSTILE_REF, "deletionPolicy": "Delete"})

    def identity_during() -> None:
        remote_name = (rw.get("Workspace", LATE_WS).get("status") or {}).get("remoteName")
        if remote_name is not None:
            recorded.add(str(remote_name))

    def identity_after(notes: list[str]) -> None:
        names = sorted(w["name"] for w in soak.hostile.live("workspaces"))
        notes.append(f"remote workspaces {names}; {LATE_WS} recorded {sorted(recorded)}")
        soak.check(recorded <= {LATE_WS}, f"wrong_identity: {LATE_WS} recorded remote names {recorded}")
        soak.check(
            names == sorted({DECOY, HOSTILE_WS, LATE_WS}),
            f"wrong_identity: remote workspaces {names} (one {LATE_WS}, the decoy untouched)",
        )

    soak.phase(
        "wrong_identity",
        options={"name": DECOY},
        setup=late_workspace,
        during=identity_during,
        after=identity_after,
    )

    # Everything off: all hostile objects converge, then deleting everything leaves nothing behind.
    soak.proxy.switch_off()
    recovered = soak.wait_recovered(RECOVERY)
    print(f"-- all off: hostile side converged after {_seconds(recovered)}", flush=True)
    soak.check(recovered is not None, f"all off: not recovered within {RECOVERY:g}s: {soak.not_converged()}")

    started = time.monotonic()
    objects = soak.hostile_objects()[1:] + soak.healthy_objects()
    for kind, name in sorted(objects, key=lambda o: o[0] == "Workspace"):
        rw.delete(kind, name)
    for kind, name in objects:
        try:
            rw.wait_gone(kind, name, timeout=max(5.0, 90 - (time.monotonic() - started)))
        except TimeoutError as exc:
            soak.check(False, f"delete: {exc}")
    print(f"-- deleted in {time.monotonic() - started:.1f}s", flush=True)
    for collection in ("workflows", "personas"):
        soak.check(soak.hostile.live(collection) == [], f"delete: hostile {collection} left behind")
        soak.check(rw.remote(collection) == [], f"delete: healthy {collection} left behind")
    names = sorted(w["name"] for w in soak.hostile.live("workspaces"))
    soak.check(names == [DECOY], f"delete: hostile workspaces left: {names} (only the decoy may stay)")
    soak.check(rw.remote("workspaces") == [], f"delete: healthy workspaces left: {rw.remote('workspaces')}")
