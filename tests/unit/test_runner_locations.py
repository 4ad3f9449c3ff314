"""The canonical runner-location shapes of the dialect layer: what is read from the free-form
runner-token and upload-config answers, which runners are a location's, and the uploadInfo.yaml."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from runwhen_operator.handlers import runnerlocation
from runwhen_operator.runwhen import dialect, errors


def test_upload_info_fills_what_the_answer_leaves_out() -> None:
    info = dialect.upload_info(
        {"token": "t0k", "papi_url": "https://papi.x"},
        papi_url="https://fallback",
        workspace="ws",
        location="l1",
    )
    assert info.values == {
        "papiURL": "https://papi.x",
        "workspaceName": "ws",
        "locationName": "l1",
        "defaultLocation": "l1",
    }
    assert "t0k" not in repr(info)
    assert info.document()["token"] == "t0k"


def test_upload_info_keeps_the_servers_keys_and_unwraps() -> None:
    answer = {
        "uploadInfo": {"token": "t", "papiURL": "https://p", "locationId": "abc", "workspaceName": "w2"}
    }
    info = dialect.upload_info(answer, papi_url="https://fallback", workspace="ws", location="l1")
    assert info.values == {
        "papiURL": "https://p",
        "locationId": "abc",
        "workspaceName": "w2",
        "locationName": "l1",
    }


@pytest.mark.parametrize("answer", [[], {"token": ""}, {"papiURL": "x"}, "text"])
def test_upload_info_without_a_token_is_unexpected(answer: object) -> None:
    with pytest.raises(errors.UnexpectedResponseError):
        dialect.upload_info(answer, papi_url="u", workspace="w", location="l")


def test_runner_token() -> None:
    token = dialect.runner_token({"token": "abc", "workspace": "w"})
    assert token.token.get_secret_value() == "abc"
    assert "abc" not in repr(token)
    with pytest.raises(errors.UnexpectedResponseError):
        dialect.runner_token({"runnerToken": "abc"})


def test_location_runners_online_first_then_newest() -> None:
    old = datetime(2026, 1, 1, tzinfo=UTC)
    new = datetime(2026, 2, 1, tzinfo=UTC)
    runners = [
        dialect.Runner("l1", "a", "stale", new),
        dialect.Runner("other", "b", "online", new),
        dialect.Runner("ws--l1", "c", "online", old),
        dialect.Runner("l1", "d", "unknown", None),
        dialect.Runner("l1", "e", "stale", old),
    ]
    assert [r.id for r in dialect.location_runners(runners, "ws", "l1")] == ["c", "a", "e", "d"]
    assert dialect.location_runners(runners, "ws", "l9") == []


def test_upload_info_yaml_is_what_the_builder_reads() -> None:
    info = dialect.upload_info({"token": "t"}, papi_url="https://p", workspace="ws", location="l1")
    text = runnerlocation.dump_upload_info(info)
    assert yaml.safe_load(text) == {
        "defaultLocation": "l1",
        "locationName": "l1",
        "papiURL": "https://p",
        "token": "t",
        "workspaceName": "ws",
    }
