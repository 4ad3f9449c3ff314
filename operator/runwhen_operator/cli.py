"""The ``runwhen-operator`` command line."""

from __future__ import annotations

import argparse
import math
import os
import sys


def _positive_duration(value: str) -> float:
    from runwhen_operator.api import common

    try:
        seconds = common.parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{value!r} must be a duration greater than 0, such as 60s or 5m")
    return seconds


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
        "--poll-interval", default=env("RUNWHEN_POLL_INTERVAL", "5m"), help="default drift-check interval"
    )
    run.add_argument(
        "--connection-check-interval",
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
    return parser


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
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from runwhen_operator import logs
    from runwhen_operator.api import common
    from runwhen_operator.handlers import context, metrics, operator

    logs.configure(args.log_format, args.log_level)
    options = context.Options(
        default_poll_interval=common.parse_duration(args.poll_interval),
        connection_check_interval=common.parse_duration(args.connection_check_interval),
        create_grace=common.parse_duration(args.create_grace),
        pass_deadline=args.pass_deadline,
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
        kube_timeout=common.parse_duration(args.kube_timeout),
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
