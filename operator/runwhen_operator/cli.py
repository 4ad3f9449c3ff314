"""The ``runwhen-operator`` command line."""

from __future__ import annotations

import argparse
import sys


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
    sub.add_parser("crds", help="print the generated CustomResourceDefinitions")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    parser.error(f"'{args.command}' is not implemented yet")
    return 2


if __name__ == "__main__":
    sys.exit(main())
