"""The ``runwhen-operator`` command line."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any


def _duration(value: str, *, zero: bool) -> float:
    from runwhen_operator.api import common

    try:
        seconds = common.parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if zero and not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{value!r} must be a duration of 0 or more, such as 0s or 5s")
    if not zero and not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{value!r} must be a duration greater than 0, such as 60s or 5m")
    return seconds


def _positive_duration(value: str) -> float:
    return _duration(value, zero=False)


def _duration_or_zero(value: str) -> float:
    return _duration(value, zero=True)


def _positive_int(value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def _positive_number(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError(f"{value!r} must be a number greater than 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwhen-operator",
        description="Kubernetes operator for RunWhen Platform workspaces, workflows and personas.",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    env = os.environ.get
    run.add_argument(
        "--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig (default: in-cluster, then ~/.kube)"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("RUNWHEN_METRICS_PORT", "9090")),
        help="Prometheus metrics port (0: off)",
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=int(env("RUNWHEN_HEALTH_PORT", "8081")),
        help="liveness/readiness port (0: off)",
    )
    run.add_argument(
        "--health-host",
        default=env("RUNWHEN_HEALTH_HOST", "0.0.0.0"),
        help="address of the health and metrics endpoints",
    )
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        metavar="NAME",
        default=env("RUNWHEN_PEERING") or None,
        help="run as one of several replicas; one is active",
    )
    peering.add_argument("--standalone", action="store_true", help="the only replica (the default)")
    run.add_argument(
        "--workers", type=int, default=int(env("RUNWHEN_WORKERS", "16")), help="concurrent reconciles"
    )
    run.add_argument(
        "--poll-interval",
        type=_positive_duration,
        default=env("RUNWHEN_POLL_INTERVAL", "5m"),
        help="default drift-check interval",
    )
    run.add_argument(
        "--connection-check-interval",
        type=_positive_duration,
        default=env("RUNWHEN_CONNECTION_CHECK_INTERVAL", "60s"),
        help="how often connections re-read their Secret",
    )
    run.add_argument(
        "--create-grace",
        default=env("RUNWHEN_CREATE_GRACE", "30s"),
        help="after creating an object, how long a listing that does not show it is not trusted",
    )
    run.add_argument(
        "--kube-timeout",
        type=_positive_duration,
        default=env("RUNWHEN_KUBE_TIMEOUT", "30s"),
        help="deadline of each Kubernetes API call the operator makes besides Kopf's watches",
    )
    run.add_argument(
        "--pass-deadline",
        type=_positive_duration,
        default=env("RUNWHEN_PASS_DEADLINE", "5m"),
        help="one reconcile pass (all of its RunWhen requests) ends within this",
    )
    run.add_argument(
        "--parent-wait",
        type=_duration_or_zero,
        default=env("RUNWHEN_PARENT_WAIT", "5s"),
        help="a new Workflow, Persona or RunnerLocation waits this long for its Workspace's first verdict"
        " before its first pass (0: not at all)",
    )
    run.add_argument(
        "--request-deadline",
        type=_positive_duration,
        default=env("RUNWHEN_REQUEST_DEADLINE", "60s"),
        help="one RunWhen request, its retries and the reading of its answer end within this",
    )
    run.add_argument(
        "--max-response-bytes",
        type=_positive_int,
        default=env("RUNWHEN_MAX_RESPONSE_BYTES", str(8 * 1024 * 1024)),
        help="refuse a RunWhen answer larger than this many bytes (decoded)",
    )
    run.add_argument(
        "--max-retry-after",
        type=_positive_duration,
        default=env("RUNWHEN_MAX_RETRY_AFTER", "5m"),
        help="the longest Retry-After of RunWhen that is honoured",
    )
    run.add_argument(
        "--max-logins-per-minute",
        type=_positive_number,
        default=env("RUNWHEN_MAX_LOGINS_PER_MINUTE", "6"),
        help="password logins per connection and minute, at most",
    )
    run.add_argument("--log-format", choices=["text", "json"], default=env("RUNWHEN_LOG_FORMAT", "text"))
    run.add_argument("--log-level", default=env("RUNWHEN_LOG_LEVEL", "info"))
    crds = sub.add_parser("crds", help="print the generated CustomResourceDefinitions")
    crds.add_argument(
        "--write",
        action="store_true",
        help="write crds/, the Helm chart's crds/, docs/crd-reference.md and the RBAC rules on the kinds "
        "(deploy/rbac, the chart's helpers) instead of printing",
    )
    crds.add_argument("--root", default=".", help="repository root to write under (with --write; default: .)")
    _export_parser(sub)
    return parser


_EXPORT_DESCRIPTION = """\
Print what a RunWhen workspace already has (the workspace, its workflows and personas) as a
multi-document YAML of custom resources, ready to commit: applied with the operator running, each
object adopts its remote object (adoptionPolicy: Adopt) and finds it in sync, so nothing is written
to RunWhen; the Workspace has deletionPolicy: Orphan. Server-owned fields and server defaults are
left out; a remote value the CRD cannot hold is left out with a comment saying so. Nothing secret is
printed. The output has no timestamps: an unchanged workspace exports to the same bytes.

The server is given by --url, with the credentials from the environment (RUNWHEN_TOKEN, or
RUNWHEN_USERNAME and RUNWHEN_PASSWORD), or by --connection, a connection object and its Secret read
with the current kubeconfig. Exit status: 0 on success, 2 for a usage error, 1 when RunWhen or
Kubernetes cannot be read (one line on stderr says why)."""


def _export_parser(sub: Any) -> None:
    env = os.environ.get
    export = sub.add_parser(
        "export",
        help="print a RunWhen workspace, its workflows and personas as YAML that adopts them",
        description=_EXPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument(
        "--url",
        default=env("RUNWHEN_URL") or None,
        help="the RunWhen API origin, e.g. https://papi.beta.runwhen.com (default: $RUNWHEN_URL); "
        "credentials from $RUNWHEN_TOKEN, or $RUNWHEN_USERNAME and $RUNWHEN_PASSWORD",
    )
    export.add_argument(
        "--connection",
        metavar="NAME",
        help="instead of --url: the ClusterRunWhenConnection NAME (or, with --connection-namespace, the "
        "RunWhenConnection) and its credentials Secret, read with the current kubeconfig; the exported "
        "objects refer to it in connectionRef",
    )
    export.add_argument(
        "--connection-namespace",
        metavar="NS",
        help="with --connection: read a RunWhenConnection in namespace NS (the objects are exported "
        "into NS too, where a RunWhenConnection must be)",
    )
    export.add_argument(
        "--kubeconfig",
        metavar="PATH",
        default=env("KUBECONFIG"),
        help="kubeconfig for --connection (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)",
    )
    export.add_argument("--workspace", "-w", metavar="NAME", required=True, help="the remote workspace")
    export.add_argument(
        "--namespace", "-n", metavar="NS", help="metadata.namespace of the exported objects (default: none)"
    )
    export.add_argument(
        "--kinds",
        action="append",
        default=[],
        metavar="KINDS",
        help="which kinds to export: Workspace, Workflow, Persona, comma-separated or repeated (default: "
        "all); without Workspace, workflows and personas name the remote workspace in workspaceName",
    )
    export.add_argument(
        "--name-prefix",
        default="",
        metavar="PREFIX",
        help="put PREFIX before every metadata.name (spec.name then keeps the remote name), e.g. to "
        "export several workspaces into one namespace",
    )
    export.add_argument(
        "--api-dialect",
        choices=["Auto", "Platform", "Documented"],
        default=None,
        help="the server's API dialect (default: the connection's apiDialect, else detected)",
    )
    export.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="PEM CA certificates to trust for the URL (default: the connection's caBundle, else the "
        "system roots)",
    )
    export.add_argument(
        "--timeout",
        metavar="DURATION",
        type=_positive_duration,
        default="30s",
        help="deadline of each RunWhen request, e.g. 30s (default: 30s)",
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write the YAML to FILE instead of stdout")


def _crds(*, write: bool, root: str) -> int:
    from pathlib import Path

    from runwhen_operator import crdgen

    if not write:
        sys.stdout.write(crdgen.render_stream())
        return 0
    for path in crdgen.write_all(Path(root)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "crds":
        return _crds(write=args.write, root=args.root)
    if args.command == "export":
        return _export(args)
    return _run(args)


class _Failed(Exception):
    """One line for stderr, and the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message, self.status = " ".join(message.split()), status


def _export(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    # One line on stderr: the transport's and Kubernetes' own log lines stay out of it.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        text = asyncio.run(_export_text(args))
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except _Failed as failed:
        print(f"runwhen-operator export: {failed.message}", file=sys.stderr)
        return failed.status
    except OSError as exc:
        print(f"runwhen-operator export: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _environment_credentials() -> dict[str, str]:
    token = os.environ.get("RUNWHEN_TOKEN", "")
    if token.strip():
        return {"token": token}
    user, password = os.environ.get("RUNWHEN_USERNAME", ""), os.environ.get("RUNWHEN_PASSWORD", "")
    if not (user.strip() and password):
        raise _Failed("set RUNWHEN_TOKEN, or RUNWHEN_USERNAME and RUNWHEN_PASSWORD (or use --connection)", 2)
    return {"username": user, "password": password}


def _connection_source(args: argparse.Namespace) -> tuple[str, dict[str, str], str | None, str | None]:
    """URL, Secret data, CA bundle and apiDialect of the connection object, read from Kubernetes."""
    import base64

    from kubernetes import client as kube_client
    from kubernetes import config as kube_config
    from kubernetes.client.exceptions import ApiException
    from pydantic import ValidationError

    from runwhen_operator.api import common, connection, kinds

    cluster = args.connection_namespace is None
    kind = "ClusterRunWhenConnection" if cluster else "RunWhenConnection"
    where = f"{kind} {'' if cluster else args.connection_namespace + '/'}{args.connection}"
    try:
        cfg = kube_client.Configuration()
        try:
            kube_config.load_kube_config(config_file=args.kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        except kube_config.ConfigException:
            if args.kubeconfig:
                raise
            kube_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        api = kube_client.ApiClient(cfg)
    except (kube_config.ConfigException, OSError) as exc:
        raise _Failed(f"cannot load a kubeconfig for --connection: {exc}") from None
    with api:
        objects = kube_client.CustomObjectsApi(api)
        plural = kinds.by_kind(kind).plural
        try:
            if cluster:
                body = objects.get_cluster_custom_object(
                    common.GROUP, common.VERSION, plural, args.connection
                )
            else:
                body = objects.get_namespaced_custom_object(
                    common.GROUP, common.VERSION, args.connection_namespace, plural, args.connection
                )
        except ApiException as exc:
            raise _Failed(f"cannot read {where}: {exc.status} {exc.reason}") from None
        except OSError as exc:
            raise _Failed(f"cannot reach Kubernetes to read {where}: {exc}") from None
        model = connection.ClusterConnectionSpec if cluster else connection.ConnectionSpec
        try:
            spec: Any = model.model_validate((body if isinstance(body, dict) else {}).get("spec") or {})
        except ValidationError as exc:
            raise _Failed(f"{where} has an invalid spec: {exc.errors()[0].get('msg')}") from None
        ref = spec.credentials_secret_ref
        secret_ns = ref.namespace if cluster else args.connection_namespace
        try:
            secret = kube_client.CoreV1Api(api).read_namespaced_secret(ref.name, secret_ns)
        except ApiException as exc:
            raise _Failed(
                f"cannot read Secret {secret_ns}/{ref.name} of {where}: {exc.status} {exc.reason}"
            ) from None
    data = {}
    for key, value in (secret.data or {}).items():
        try:
            data[key] = base64.b64decode(value).decode()
        except ValueError:
            continue
    return str(spec.url), data, spec.ca_bundle, str(spec.api_dialect)


async def _export_text(args: argparse.Namespace) -> str:
    from runwhen_operator.reconcile import connections, export
    from runwhen_operator.runwhen import apis, client, dialect, errors

    if (args.url is None) == (args.connection is None):
        raise _Failed("give one of --url (or $RUNWHEN_URL) and --connection", 2)
    if args.connection_namespace is not None and args.connection is None:
        raise _Failed("--connection-namespace needs --connection", 2)
    try:
        kinds = export.parse_kinds(args.kinds)
        export.check_name_prefix(args.name_prefix)
    except ValueError as exc:
        raise _Failed(str(exc), 2) from None
    namespace = args.namespace
    connection_ref: dict[str, str] | None = None
    ca_bundle: str | None = None
    pinned_text = args.api_dialect
    if args.connection is not None:
        if args.connection_namespace is not None:
            if namespace not in (None, args.connection_namespace):
                raise _Failed(
                    "a RunWhenConnection serves only its own namespace: --namespace must be "
                    "--connection-namespace",
                    2,
                )
            namespace = args.connection_namespace
            connection_ref = {"kind": "RunWhenConnection", "name": args.connection}
        elif args.connection != "default":
            connection_ref = {"kind": "ClusterRunWhenConnection", "name": args.connection}
        url, secret_data, ca_bundle, connection_dialect = _connection_source(args)
        pinned_text = pinned_text or connection_dialect
        what = "the connection's Secret"
    else:
        url, secret_data, what = args.url, _environment_credentials(), "the environment"
    if args.ca_bundle:
        try:
            with open(args.ca_bundle, encoding="utf-8") as pem:
                ca_bundle = pem.read()
        except OSError as exc:
            raise _Failed(f"cannot read --ca-bundle {args.ca_bundle}: {exc.strerror}", 2) from None
    try:
        credentials = connections.credentials_from_secret(secret_data)
    except connections.CredentialsError as exc:
        raise _Failed(f"no usable credentials in {what}: {exc}") from None
    pinned = dialect.parse_dialect(pinned_text)
    try:
        rw = client.RunWhenClient(
            url,
            credentials,
            ca_bundle=ca_bundle or None,
            timeout_seconds=args.timeout,
            request_deadline=args.timeout,
            max_attempts=3,
            backoff_cap=2.0,
        )
    except ValueError as exc:
        raise _Failed(f"bad URL {url!r}: {exc}", 2 if args.connection is None else 1) from None
    try:
        try:
            api = await apis.verify(rw, pinned)
        except errors.AuthError as exc:
            raise _Failed(f"RunWhen at {rw.base_url} refused the credentials from {what}: {exc}") from None
        except errors.RunWhenError as exc:
            raise _Failed(f"cannot use the RunWhen API at {rw.base_url}: {exc}") from None
        try:
            remote = await export.read(api, args.workspace, kinds)
            result = export.export(
                remote,
                export.Options(
                    namespace=namespace,
                    kinds=kinds,
                    name_prefix=args.name_prefix,
                    connection_ref=connection_ref,
                    workspace_body=api.workspace_body,
                ),
            )
        except export.ExportError as exc:
            raise _Failed(str(exc)) from None
        except errors.RunWhenError as exc:
            raise _Failed(f"cannot read workspace {args.workspace!r} at {rw.base_url}: {exc}") from None
        source = f'workspace "{args.workspace}" at {rw.base_url} ({api.api_dialect.value} API)'
        return export.render(result, source=source)
    finally:
        await rw.aclose()


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from runwhen_operator import logs
    from runwhen_operator.api import common
    from runwhen_operator.handlers import context, metrics, operator

    logs.configure(args.log_format, args.log_level)
    options = context.Options(
        default_poll_interval=args.poll_interval,
        connection_check_interval=args.connection_check_interval,
        create_grace=common.parse_duration(args.create_grace),
        pass_deadline=args.pass_deadline,
        parent_wait=args.parent_wait,
    )
    collector = metrics.PrometheusMetrics()
    if args.metrics_port:
        collector.serve(args.health_host, args.metrics_port)
    config = operator.Config(
        namespaces=list(args.namespace),
        clusterwide=not args.namespace,
        kubeconfig=args.kubeconfig,
        workers=args.workers,
        options=options,
        peering=None if args.standalone else args.peering,
        liveness_endpoint=f"http://{args.health_host}:{args.health_port}/healthz"
        if args.health_port
        else None,
        metrics=collector,
        kube_timeout=args.kube_timeout,
        client_options={
            "on_request": collector.on_request,
            "on_retry": collector.on_retry,
            "max_response_bytes": args.max_response_bytes,
            "request_deadline": args.request_deadline,
            "max_retry_after": args.max_retry_after,
            "max_logins_per_minute": args.max_logins_per_minute,
        },
    )
    try:
        asyncio.run(operator.run(config))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
