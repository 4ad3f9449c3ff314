"""Recorded HTTP exchanges checked against the RunWhen server's own OpenAPI document (papi.json).

The emulator started with ``--record-exchanges DIR`` appends one JSON object per ``/api/`` exchange to
``DIR/exchanges-<pid>.jsonl``::

    {"dialect", "method", "path", "query", "requestContentType", "userAgent", "requestBody",
     "status", "responseContentType", "responseBody", "fault"}

:class:`ContractValidator` checks them with openapi-core against ``papi.json`` (the extract of the server's
document written by ``hack/extract-papi-contract.py``):

- platform-dialect exchanges only (documented-dialect ones are counted, not checked);
- the request, when the operator's own client sent it (``userAgent`` ``runwhen-operator``): its path,
  query and body parameters against the operation (the recording has no headers, so security is not
  checked); other agents send bad requests on purpose;
- every response: when the status is documented for the operation, the body against that status's
  schema (a documented status without a schema has nothing to check); an undocumented error status must
  carry FastAPI's error shape ``{"detail": string | [{loc, msg, type}, ...]}``; an undocumented success
  or redirect status is a violation;
- an exchange on an operation that is not in ``papi.json`` is a violation. The one exception: an agent
  other than the operator may probe a route that does not exist, and the framework's own answer to that
  (404 ``Not Found``, 405 ``Method Not Allowed``, a 307 slash redirect to a documented operation) is
  what the server would say too. The operator's client sends exactly one such request on purpose: the
  dialect probe ``GET /api/v3/workspaces/`` (the documented API's slashed path), whose framework answer
  on a platform server is what tells the two apart (``DIALECT_PROBE``);
- fault-injected responses (``fault`` not null) are counted and checked only for the error shape (a
  dropped connection has no response to check);
- a request whose client left before it arrived in full (``clientGone``: killed or giving up mid-body)
  is counted and checked only for its operation: what it meant to send is unknown, and nobody was
  answered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jsonschema
from jsonschema_path import SchemaPath
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.validators import (
    V31RequestBodyValidator,
    V31RequestParametersValidator,
)
from openapi_core.validation.response.validators import V31ResponseDataValidator
from werkzeug.datastructures import ImmutableMultiDict

__all__ = [
    "DEFAULT_DOCUMENT",
    "ERROR_SHAPE",
    "OPERATOR_AGENT",
    "ContractReport",
    "ContractValidator",
    "Violation",
    "load_exchanges",
]


def _emulator_dir() -> Path:
    """The emulator package's directory, found without importing the emulator."""
    spec = find_spec("runwhen_operator.emulator")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


DEFAULT_DOCUMENT = _emulator_dir() / "papi.json"
OPERATOR_AGENT = "runwhen-operator"
#: The one request the operator sends to a route the document does not have: the dialect probe
#: (runwhen_operator.runwhen.apis.verify), answered by the framework's redirect or 404.
DIALECT_PROBE = ("GET", "/api/v3/workspaces/")
PLATFORM = "platform"
DOCUMENTED = "documented"
HOST_URL = "http://papi.invalid"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# What FastAPI answers for HTTPException (detail: string) and RequestValidationError (detail: list).
# Extra keys are allowed: papi adds some to a few errors (e.g. "unknown_keys" on strict-sync 422s).
ERROR_SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
            ]
        }
    },
}
_ERROR_VALIDATOR = jsonschema.Draft202012Validator(ERROR_SHAPE)
_FRAMEWORK_ANSWERS = {404: "Not Found", 405: "Method Not Allowed"}


@dataclass(frozen=True)
class Violation:
    """One way an exchange disagrees with the document."""

    where: str  # "file:line" of the record
    kind: str  # "record", "operation", "request", "response"
    method: str
    path: str
    status: int | None
    user_agent: str
    message: str

    def __str__(self) -> str:
        status = "-" if self.status is None else self.status
        return (
            f"{self.where}: {self.kind}: {self.method} {self.path} -> {status} "
            f"[{self.user_agent or 'no user agent'}]: {self.message}"
        )


@dataclass
class ContractReport:
    """Counters and violations of one validation run."""

    exchanges: int = 0  # platform-dialect exchanges checked
    operator_requests: int = 0  # requests of the operator's client validated
    responses: int = 0  # responses validated (fault-injected ones included)
    faults: int = 0  # fault-injected exchanges (checked for the error shape only)
    documented: int = 0  # documented-dialect exchanges, counted and not checked
    incomplete: int = 0  # requests whose client left before they arrived in full
    files: int = 0
    violations: list[Violation] = field(default_factory=list)

    def merge(self, other: ContractReport) -> None:
        self.exchanges += other.exchanges
        self.operator_requests += other.operator_requests
        self.responses += other.responses
        self.faults += other.faults
        self.documented += other.documented
        self.incomplete += other.incomplete
        self.files += other.files
        self.violations.extend(other.violations)

    def summary(self) -> str:
        return (
            f"contract: {self.exchanges} exchanges checked ({self.operator_requests} operator requests, "
            f"{self.responses} responses), {len(self.violations)} violations"
        )


@dataclass(frozen=True)
class _Operation:
    template: str
    method: str
    spec: Mapping[str, Any]

    @property
    def statuses(self) -> Mapping[str, Any]:
        responses: Mapping[str, Any] = self.spec.get("responses", {})
        return responses


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template)
    pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(f"^{pattern}$")


def _describe(exc: BaseException) -> str:
    """openapi-core's error with the JSON-schema errors underneath it."""
    text = str(exc) or type(exc).__name__
    details: list[str] = []
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        for error in getattr(node, "schema_errors", ()) or ():
            location = "/".join(str(p) for p in error.absolute_path)
            details.append(f"{location or '<root>'}: {error.message}")
        node = node.__cause__ or node.__context__
    if details:
        more = f" (+{len(details) - 5} more)" if len(details) > 5 else ""
        return f"{type(exc).__name__}: " + "; ".join(details[:5]) + more
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text


def _query(value: Any) -> ImmutableMultiDict[str, str]:
    """The recorded query (a raw string, a mapping of values or lists, or a list of pairs) as a multidict."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, str):
        pairs = parse_qsl(value.lstrip("?"), keep_blank_values=True)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            items = item if isinstance(item, list) else [item]
            pairs.extend((str(key), _scalar(v)) for v in items)
    elif isinstance(value, list):
        pairs = [(str(k), _scalar(v)) for k, v in value]
    return ImmutableMultiDict(pairs)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_operator(user_agent: str | None) -> bool:
    agent = (user_agent or "").strip()
    return agent == OPERATOR_AGENT or agent.startswith(OPERATOR_AGENT + "/")


class ContractValidator:
    """Validates exchanges against one OpenAPI 3.1 document (default: the packaged papi.json)."""

    def __init__(self, document: Path | Mapping[str, Any] = DEFAULT_DOCUMENT) -> None:
        if isinstance(document, Path):
            document = json.loads(document.read_text(encoding="utf-8"))
        assert isinstance(document, Mapping)
        self.document: Mapping[str, Any] = document
        self._operations: list[tuple[re.Pattern[str], _Operation]] = []
        for template, item in document.get("paths", {}).items():
            for method, operation in item.items():
                if method in METHODS:
                    self._operations.append(
                        (_template_regex(template), _Operation(template, method.upper(), operation))
                    )
        # concrete paths first: POST .../workflows/sync-typed before .../workflows/{workflow_name}
        self._operations.sort(key=lambda entry: (entry[1].template.count("{"), entry[1].template))

    @cached_property
    def _spec(self) -> SchemaPath:
        return SchemaPath.from_dict(dict(self.document))

    @cached_property
    def _parameters(self) -> V31RequestParametersValidator:
        return V31RequestParametersValidator(self._spec)

    @cached_property
    def _body(self) -> V31RequestBodyValidator:
        return V31RequestBodyValidator(self._spec)

    @cached_property
    def _data(self) -> V31ResponseDataValidator:
        return V31ResponseDataValidator(self._spec)

    # --- lookup -----------------------------------------------------------------------------------

    def find(self, method: str, path: str) -> _Operation | None:
        """The document's operation for a concrete ``method`` and ``path``, or None."""
        method = method.upper()
        for regex, operation in self._operations:
            if operation.method == method and regex.match(path):
                return operation
        return None

    def operations(self) -> list[tuple[str, str]]:
        return sorted((op.method, op.template) for _, op in self._operations)

    # --- validation -------------------------------------------------------------------------------

    def validate_file(self, path: Path) -> ContractReport:
        report = ContractReport(files=1)
        seen: dict[str, ContractReport] = {}  # resyncs repeat the same exchange many times: check it once
        for where, record, error in load_exchanges(path):
            if error is not None:
                report.violations.append(Violation(where, "record", "-", "-", None, "", error))
                continue
            key = json.dumps(record, sort_keys=True)
            if key not in seen:
                seen[key] = self.validate(record, where=where)
            one = seen[key]
            report.merge(
                ContractReport(
                    exchanges=one.exchanges,
                    operator_requests=one.operator_requests,
                    responses=one.responses,
                    faults=one.faults,
                    documented=one.documented,
                    violations=[replace(v, where=where) for v in one.violations],
                )
            )
        return report

    def validate_files(self, paths: Iterable[Path]) -> ContractReport:
        report = ContractReport()
        for path in paths:
            report.merge(self.validate_file(path))
        return report

    def validate(self, exchange: Mapping[str, Any], *, where: str = "<exchange>") -> ContractReport:
        """Check one recorded exchange; the report counts it and lists what is wrong with it."""
        report = ContractReport()
        dialect = str(exchange.get("dialect") or PLATFORM).lower()
        if dialect == DOCUMENTED:
            report.documented = 1
            return report
        method = str(exchange.get("method") or "").upper()
        # the path as recorded (the query is a field of its own: a "?" here belongs to the path)
        raw_path = path = str(exchange.get("path") or "")
        status = exchange.get("status")
        status = int(status) if isinstance(status, int | str) and str(status).isdigit() else None
        agent = str(exchange.get("userAgent") or "")
        fault = exchange.get("fault")
        report.exchanges = 1

        def violation(kind: str, message: str) -> None:
            report.violations.append(Violation(where, kind, method, raw_path, status, agent, message))

        if dialect != PLATFORM:
            violation("record", f"unknown dialect {exchange.get('dialect')!r}")
            return report
        if not method or not path.startswith("/"):
            violation("record", "the record has no method or path")
            return report

        operation = self.find(method, path)
        body = exchange.get("responseBody")
        if exchange.get("clientGone"):
            report.incomplete = 1
            if operation is None and (method, path) != DIALECT_PROBE:
                violation("operation", f"{method} {path} is not an operation of the document")
            return report
        if fault is not None:
            report.faults = 1
            if status is not None and status > 0 and body is not None:
                report.responses = 1
                self._check_error_shape(body, violation, f"fault {fault!r}: ")
            if operation is None and (method, path) != DIALECT_PROBE:
                violation("operation", f"{method} {path} is not an operation of the document")
            return report

        if operation is None:
            probe = (method, path) == DIALECT_PROBE
            if (is_operator(agent) and not probe) or not self._framework_answer(
                method, path, status, body, exchange
            ):
                violation("operation", f"{method} {path} is not an operation of the document")
            if status is not None and status >= 400 and body is not None:
                report.responses = 1
                self._check_error_shape(body, violation)
            return report

        request = self._request(exchange, method, path)
        if is_operator(agent):
            report.operator_requests = 1
            for error in self._parameters.iter_errors(request):
                violation("request", f"{operation.method} {operation.template}: {_describe(error)}")
            for error in self._body.iter_errors(request):
                violation("request", f"{operation.method} {operation.template}: {_describe(error)}")

        if status is None or status <= 0:
            violation("response", "no response status recorded (and no fault named)")
            return report
        report.responses = 1
        statuses = operation.statuses
        documented = str(status) in statuses or f"{str(status)[0]}XX" in statuses or "default" in statuses
        if documented:
            spec = statuses.get(str(status)) or statuses.get(f"{str(status)[0]}XX") or statuses["default"]
            if not spec.get("content"):
                if status >= 400 and body:
                    self._check_error_shape(body, violation)
                return report
            response = MockResponse(
                (body or "").encode("utf-8"),
                status_code=status,
                content_type=exchange.get("responseContentType") or "application/json",
            )
            for error in self._data.iter_errors(request, response):
                violation("response", f"{operation.method} {operation.template} {status}: {_describe(error)}")
        elif status >= 400:
            self._check_error_shape(body, violation)
        else:
            listed = ", ".join(sorted(statuses))
            violation("response", f"status {status} is not documented for this operation ({listed})")
        return report

    # --- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _request(exchange: Mapping[str, Any], method: str, path: str) -> MockRequest:
        body = exchange.get("requestBody")
        request = MockRequest(
            HOST_URL,
            method.lower(),
            quote(path, safe="/%:@!$&'()*+,;=-._~"),  # openapi-core parses it as a URL: "?", "#" escaped
            data=body.encode("utf-8") if isinstance(body, str) else None,
            content_type=_media_type(exchange.get("requestContentType")) or "application/json",
        )
        request.parameters.query = _query(exchange.get("query"))
        return request

    @staticmethod
    def _check_error_shape(body: Any, violation: Any, prefix: str = "") -> None:
        if body is None or body == "":
            violation("response", prefix + 'an error response without a body (FastAPI sends {"detail": ...})')
            return
        try:
            data = json.loads(body) if isinstance(body, str) else body
        except ValueError:
            violation("response", prefix + f"an error body that is not JSON: {str(body)[:120]!r}")
            return
        errors = sorted(_ERROR_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            messages = "; ".join(
                f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:3]
            )
            violation("response", prefix + f"not FastAPI's error shape {{detail}}: {messages}")

    def _framework_answer(
        self, method: str, path: str, status: int | None, body: Any, exchange: Mapping[str, Any]
    ) -> bool:
        """Whether this is the framework's answer to a route that does not exist."""
        if status in _FRAMEWORK_ANSWERS:
            try:
                data = json.loads(body) if isinstance(body, str) else body
            except ValueError:
                return False
            return isinstance(data, dict) and data.get("detail") == _FRAMEWORK_ANSWERS[status]
        if status == 307:  # Starlette's redirect_slashes: the other slash form is the route
            other = path[:-1] if path.endswith("/") else path + "/"
            return self.find(method, other) is not None
        return False


def load_exchanges(path: Path) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """``(where, record, error)`` for every non-empty line of a JSONL file."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            where = f"{path.name}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                if not line.endswith("\n"):  # a line still being written when the process died
                    return
                yield where, {}, f"not JSON: {exc}"
                continue
            if not isinstance(record, dict):
                yield where, {}, "not a JSON object"
                continue
            yield where, record, None
