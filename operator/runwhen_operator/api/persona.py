"""``Persona``: a RunWhen persona (an AI assistant's filters and run settings)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from runwhen_operator.api import common

__all__ = ["PersonaSpec", "PersonaStatus"]

_Tag = Annotated[str, Field(min_length=1, max_length=128)]
_Word = Annotated[str, Field(min_length=1, max_length=128)]


class PersonaSpec(common.WorkspaceParentSpec):
    """The desired state of a RunWhen persona. Fields left unset keep the server's defaults."""

    model_config = ConfigDict(
        json_schema_extra=common.validations(*common.WORKSPACE_PARENT_RULES, common.NAME_IMMUTABLE_RULE)
    )

    name: common.DnsLabel | None = Field(
        default=None,
        description=(
            "Name of the remote persona (a DNS label). Defaults to metadata.name. Immutable: it can "
            "only be set at creation, or later to metadata.name."
        ),
    )
    full_name: str | None = Field(default=None, max_length=256, description="Full display name.")
    description: str | None = Field(default=None, max_length=4096, description="What the persona is for.")
    avatar_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="URL of the persona's avatar image.",
    )
    filter_confidence_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Minimum confidence (0..1) for a task to be suggested. Server default 0.5.",
    )
    filter_issue_selection_strategy: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z_]+$",
        description="How issues are selected, e.g. `MOST_SEVERE` (the server's default).",
    )
    filter_codebundle_task_tags: list[_Tag] | None = Field(
        default=None, max_length=256, description="Only consider tasks of codebundles with these tags."
    )
    filter_stop_words: list[_Word] | None = Field(
        default=None, max_length=512, description="Words ignored when matching tasks."
    )
    filter_scope: common.FreeValue | None = Field(
        default=None,
        description=(
            "Scope restricting which resources the persona considers: a string on the platform API, a "
            "free-form object on the documented one."
        ),
    )
    search_filters: common.FreeForm | None = Field(
        default=None, description="Free-form filters applied to the persona's searches."
    )
    run_confidence_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Minimum confidence (0..1) for a task to run without approval. Server default 0.95.",
    )
    run_config: common.FreeForm | None = Field(
        default=None, description="Free-form settings of the persona's task runs."
    )

    def remote_name(self, metadata_name: str) -> str:
        """The remote persona's name: spec.name, or the resource's metadata.name."""
        return self.name or metadata_name


class PersonaStatus(common.ManagedStatus):
    """The observed state of the persona."""

    id: int | None = Field(default=None, description="Remote id of the persona.")
    workspace: common.DnsLabel | None = Field(
        default=None, description="Name of the remote workspace the persona is in."
    )
