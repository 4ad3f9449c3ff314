"""The ``runwhen-emulator`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from runwhen_operator.emulator.app import DIALECTS, EmulatorConfig, run_emulator
from runwhen_operator.emulator.store import RUN_OUTCOMES, StateFileError

__all__ = ["build_parser", "config_from_args", "main", "serve"]


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _page_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwhen-emulator",
        description="RunWhen Platform API emulator: /api/ in one of two dialects plus the /_emulator/ "
        "control endpoints.",
    )
    parser.add_argument(
        "--dialect",
        choices=tuple(DIALECTS),
        default="platform",
        help="the API to speak: 'platform' (the RunWhen server's own OpenAPI document, papi 2.0.0) or "
        "'documented' (the older public documentation pages) (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--username", default="admin", help="the user that POST /token/ accepts (default: %(default)s)"
    )
    parser.add_argument("--password", default="admin", help="that user's password (default: %(default)s)")
    parser.add_argument(
        "--api-token", default=None, help="a static token also accepted as 'Authorization: Bearer TOKEN'"
    )
    parser.add_argument(
        "--token-lifetime",
        type=_positive_float,
        default=300.0,
        help="access token lifetime in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--refresh-token-lifetime",
        type=_positive_float,
        default=86_400.0,
        help="refresh token lifetime in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--page-size", type=_page_size, default=50, help="default page size of lists (default: %(default)s)"
    )
    parser.add_argument(
        "--auto-suffix-duplicates",
        action="store_true",
        help="documented dialect: store a duplicate workspace name as NAME-2, NAME-3, ... instead of "
        "answering 400 (the platform dialect always does)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="load objects from this JSON file at start, save after every change",
    )
    parser.add_argument(
        "--run-step-seconds",
        type=_non_negative_float,
        default=1.0,
        help="seconds a workflow run spends queued, then started; a platform run request created, then "
        "dispatched (default: %(default)s)",
    )
    parser.add_argument(
        "--run-outcome",
        choices=RUN_OUTCOMES,
        default="completed",
        help="how workflow runs and platform run requests end (default: %(default)s)",
    )
    parser.add_argument(
        "--record-exchanges",
        type=Path,
        default=None,
        metavar="DIR",
        help="append one JSON line per API exchange to DIR/exchanges-<pid>.jsonl",
    )
    parser.add_argument(
        "--allow-remote-control",
        action="store_true",
        help="let non-loopback clients use /_emulator/ endpoints",
    )
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="shut down when the parent process exits"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument("--log-level", default="WARNING", help="stderr log level (default: %(default)s)")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        dialect=args.dialect,
        username=args.username,
        password=args.password,
        api_token=args.api_token,
        token_lifetime=args.token_lifetime,
        refresh_token_lifetime=args.refresh_token_lifetime,
        page_size=args.page_size,
        auto_suffix_duplicates=args.auto_suffix_duplicates,
        state_file=args.state_file,
        run_step_seconds=args.run_step_seconds,
        run_outcome=args.run_outcome,
        allow_remote_control=args.allow_remote_control,
        access_log=args.access_log,
        record_exchanges=args.record_exchanges,
    )


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


async def serve(config: EmulatorConfig, *, exit_with_parent: bool = False) -> None:
    """Serve until SIGTERM or SIGINT (or the parent's exit); print the listening line once ready."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()
    async with run_emulator(config) as url:
        print(f"runwhen-emulator listening on {url}", flush=True)
        watcher = asyncio.create_task(_watch_parent(parent, stop)) if exit_with_parent else None
        await stop.wait()
        if watcher is not None:
            await watcher


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = config_from_args(args)
    try:
        asyncio.run(serve(config, exit_with_parent=args.exit_with_parent))
    except StateFileError as exc:
        print(f"runwhen-emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"runwhen-emulator: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
