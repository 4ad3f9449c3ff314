"""``ClusterRunWhenConnection`` and ``RunWhenConnection``: where the RunWhen API is, and how to log in."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from runwhen_operator.api import common

__all__ = [
    "SECRET_KEY_PASSWORD",
    "SECRET_KEY_TOKEN",
    "SECRET_KEY_USERNAME",
    "ApiDialect",
    "AuthMode",
    "ClusterConnectionSpec",
    "ClusterSecretRef",
    "ConnectionSpec",
    "ConnectionStatus",
    "LocalSecretRef",
    "RateLimit",
]

SECRET_KEY_USERNAME = "username"
SECRET_KEY_PASSWORD = "password"
SECRET_KEY_TOKEN = "token"

AuthMode = Literal["password", "token"]
ApiDialect = Literal["Auto", "Platform", "Documented"]

_SECRET_KEYS = (
    "The Secret holds either the keys `username` and `password` (the operator logs in with "
    "POST /api/v3/token/ and renews the JWT with /token/refresh/), or the key `token` (a personal "
    "access token, sent as the Bearer token as is)."
)


class ClusterSecretRef(common.CRDModel):
    """A Secret anywhere in the cluster."""

    name: common.ObjectName = Field(description="Name of the Secret.")
    namespace: common.DnsLabel = Field(description="Namespace of the Secret.")


class LocalSecretRef(common.CRDModel):
    """A Secret in the namespace of the connection."""

    name: common.ObjectName = Field(description="Name of the Secret, in the namespace of the connection.")
    namespace: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Must be omitted: the Secret is always read from the namespace of the RunWhenConnection "
            "(a namespaced connection cannot use credentials from another namespace)."
        ),
    )

    @model_validator(mode="after")
    def _no_namespace(self) -> LocalSecretRef:
        if self.namespace is not None:
            raise ValueError(
                "credentialsSecretRef.namespace must be omitted: a RunWhenConnection reads its Secret "
                "from its own namespace"
            )
        return self


class RateLimit(common.CRDModel):
    """Client-side rate limit for calls to the RunWhen API (a token bucket)."""

    requests_per_second: float = Field(
        default=10,
        gt=0,
        le=1000,
        description="Sustained number of requests per second (the bucket's refill rate).",
    )
    burst: int = Field(
        default=20, ge=1, le=10000, description="Maximum number of requests sent at once (the bucket's size)."
    )


class _ConnectionSpecBase(common.CRDModel):
    url: str = Field(
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        description=(
            "Origin of the RunWhen platform API, e.g. https://papi.example.runwhen.com (papi.<env>."
            "runwhen.com); the paths are the client's."
        ),
    )
    api_dialect: ApiDialect = Field(
        default="Auto",
        description=(
            "Which shape of the API the server speaks: `Platform` (the running RunWhen server: v3 reads "
            "and v4 upserts by short name), `Documented` (the older public pages: trailing slashes, "
            "integer ids), or `Auto` (the default: one probe when the credentials are verified, the "
            "result shown in status.apiDialect)."
        ),
    )
    ca_bundle: str | None = Field(
        default=None,
        max_length=262144,
        pattern=r"^(\s*|[\s\S]*-----BEGIN CERTIFICATE-----[\s\S]*)$",
        description=(
            "PEM-encoded CA certificates to trust for the URL, in addition to the system roots. Omit "
            "for a publicly trusted certificate."
        ),
    )
    rate_limit: RateLimit = Field(
        default_factory=RateLimit,
        description="Client-side rate limit for all calls made through this connection.",
        json_schema_extra={"default": {}},
    )
    timeout_seconds: int = Field(
        default=30, ge=1, le=300, description="Timeout of each HTTP request to the RunWhen API, in seconds."
    )


class ClusterConnectionSpec(_ConnectionSpecBase):
    """Spec of a ClusterRunWhenConnection."""

    credentials_secret_ref: ClusterSecretRef = Field(
        description="The Secret with the credentials; a cluster-scoped connection names its namespace. "
        + _SECRET_KEYS
    )


class ConnectionSpec(_ConnectionSpecBase):
    """Spec of a RunWhenConnection."""

    credentials_secret_ref: LocalSecretRef = Field(
        description="The Secret with the credentials, in the namespace of this connection. " + _SECRET_KEYS,
        json_schema_extra=common.validations(
            common.cel(
                "!has(self.__namespace__)",
                "credentialsSecretRef.namespace must be omitted: a RunWhenConnection reads its Secret "
                "from its own namespace",
                field_path=".namespace",
                reason="FieldValueForbidden",
            )
        ),
    )


class ConnectionStatus(common.CRDModel):
    """Status of a connection."""

    last_handled_configuration: str | None = common.last_handled_field()

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the status was computed for."
    )
    conditions: list[common.Condition] = common.conditions_field(
        "Conditions of the connection: `Ready` is True when the credentials were read and the API "
        "accepted them. Reasons are CamelCase."
    )
    auth_mode: AuthMode | None = Field(
        default=None,
        description=(
            "How the operator authenticates: `password` (username and password, JWT) or `token` "
            "(personal access token)."
        ),
    )
    last_verified_time: common.Timestamp | None = Field(
        default=None, description="When the credentials were last verified against the API."
    )
    api_dialect: Literal["Platform", "Documented"] | None = Field(
        default=None,
        description="The shape of the API the server speaks, as pinned in spec.apiDialect or detected.",
    )

    def condition(self, type_: str) -> common.Condition | None:
        """The condition of the given type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)
