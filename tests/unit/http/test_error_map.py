"""The one mapping table from the exception tree to HTTP."""

from __future__ import annotations

import pytest

from gateway import errors
from gateway.http.errors import ERROR_MAP, describe


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def test_every_error_class_has_its_own_row() -> None:
    """Every class in gateway.errors' tree has an explicit entry in ERROR_MAP."""
    tree = {errors.StopgateError} | all_subclasses(errors.StopgateError)
    assert tree - set(ERROR_MAP) == set()


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.ModelNotFound("no such model", param="model"), 404, "model_not_found"),
        (errors.RequestError("bad"), 400, None),
        (errors.AuthError("who are you"), 401, "invalid_api_key"),
        (errors.RateLimited("slow down", retry_after=2), 429, "rate_limit_exceeded"),
        (errors.StoreUnavailable("redis down"), 503, "store_unavailable"),
    ],
)
def test_describe_gives_openai_error_objects(exc: errors.StopgateError, status: int, code: str | None) -> None:
    """describe() returns the status and an OpenAI error object with message, type, param, code."""
    got_status, body = describe(exc)
    assert got_status == status
    assert body["error"]["message"] == exc.message
    assert body["error"]["code"] == code
    assert {"message", "type", "param", "code"} <= body["error"].keys()


def test_definition_errors_list_every_located_problem() -> None:
    """A DefinitionError is a 422 naming the first field and listing every problem with file and line."""
    exc = errors.DefinitionError(
        [
            errors.Problem("p.yaml", 3, "rules[0].x", "unknown key"),
            errors.Problem("p.yaml", 7, "max_tokens", "must be > 0"),
        ]
    )
    status, body = describe(exc)
    assert status == 422
    assert body["error"]["param"] == "rules[0].x"
    assert [p["line"] for p in body["error"]["problems"]] == [3, 7]
