"""Calls tool functions of RunWhen's own MCP server (runwhen-platform-mcp) for the tests, one per line.

Runs in the separate virtual environment that holds runwhen-platform-mcp (never in the project's venv):
the server module reads ``RW_API_URL`` and ``RUNWHEN_TOKEN`` at import. Protocol on stdin/stdout, one
JSON object per line:

    -> {"tool": "list_assistants", "args": {"workspace_name": "demo"}}
    <- {"ok": true, "result": <the tool's JSON answer, parsed>}   or   {"ok": false, "error": "..."}
    -> {"set": {"SLX_RUN_POLL_INTERVAL_S": 1}}                   (module constants, e.g. poll intervals)
    <- {"ok": true, "result": null}

Arguments a call leaves out get the tool's declared defaults (the tools declare them with pydantic's
``Field(default=...)``, which a direct call would otherwise pass through as FieldInfo objects).
Only the standard library and the MCP package are imported here.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import traceback
from typing import Any


def _defaults(function: Any, args: dict[str, Any]) -> dict[str, Any]:
    filled = dict(args)
    for name, parameter in inspect.signature(function).parameters.items():
        if name in filled or parameter.default is inspect.Parameter.empty:
            continue
        default = parameter.default
        if type(default).__name__ == "FieldInfo":
            if default.default_factory is not None:
                default = default.default_factory()
            elif repr(default.default) == "PydanticUndefined":
                continue
            else:
                default = default.default
        filled[name] = default
    return filled


def main() -> int:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr  # whatever the package prints must not mix with the answers
    from runwhen_platform_mcp import server

    loop = asyncio.new_event_loop()
    protocol.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            if "set" in message:
                for key, value in message["set"].items():
                    setattr(server, key, value)
                answer: dict[str, Any] = {"ok": True, "result": None}
            else:
                tool = getattr(server, message["tool"])
                function = getattr(tool, "fn", tool)  # FastMCP 2 wraps tools; 3+ returns the function
                text = loop.run_until_complete(function(**_defaults(function, message.get("args", {}))))
                try:
                    result = json.loads(text)
                except (TypeError, ValueError):
                    result = text
                answer = {"ok": True, "result": result}
        except Exception as exc:
            answer = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        protocol.write(json.dumps(answer, default=str) + "\n")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
