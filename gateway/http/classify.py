"""``POST /v1/classify`` (which domain a text belongs to) and the admin view/reload of domain files.

The body is read raw so every malformed request is a clean 400 naming ``text``: invalid JSON, not
an object, ``text`` missing, null, not a string, or blank. Long texts are accepted (up to the
gateway's body limit) and classified from their first ``MAX_TEXT_CHARS`` characters.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post

from gateway.errors import NotReady, RequestError
from gateway.http.decoding import decode_json
from gateway.http.guards import admin_guard, api_key_guard
from gateway.services import Services

MAX_TEXT_CHARS = 4096
"""Texts are cut to this many characters before classification (the embedder reads 128 tokens)."""


def parse_classify_body(body: bytes) -> str:
    """The ``text`` of a ``/v1/classify`` body, cut to ``MAX_TEXT_CHARS``; ``RequestError`` otherwise."""
    try:
        value = decode_json(body) if body.strip() else None
    except RequestError as exc:
        raise RequestError(f'{exc.message} Send {{"text": "..."}}.', param="text") from None
    if not isinstance(value, dict):
        raise RequestError('the body must be a JSON object: {"text": "..."}', param="text")
    if "text" not in value or value["text"] is None:
        raise RequestError("'text' is required", param="text")
    text = value["text"]
    if not isinstance(text, str):
        raise RequestError(f"'text' must be a string, not {type(text).__name__}", param="text")
    if not text.strip():
        raise RequestError("'text' must not be empty", param="text")
    return text[:MAX_TEXT_CHARS]


def _classifier(services: Services) -> Any:
    if services.classifier is None:
        raise NotReady("the domain classifier is not loaded")
    return services.classifier


def _domains_view(classifier: Any) -> dict[str, Any]:
    domains = classifier.domains
    return {
        "digest": domains.digest(),
        "threshold": classifier.threshold,
        "fallback": classifier.fallback,
        "data": [
            {
                "name": d.name,
                "description": d.description,
                "examples": len(d.examples),
                "keywords": list(d.keywords),
                "file": str(domains.files[d.name]),
            }
            for d in domains.domains
        ],
    }


class ClassifyController(Controller):
    path = "/v1"
    guards = [api_key_guard]  # noqa: RUF012 - Litestar's declaration style

    @post("/classify", status_code=200, summary="The domain of a text: {domain, confidence, scores}")
    async def classify(self, request: Request[Any, Any, Any], services: Services) -> dict[str, Any]:
        text = parse_classify_body(await request.body())
        result = await _classifier(services).aclassify(text)
        return {"domain": result.domain, "confidence": result.confidence, "scores": result.scores}


class AdminDomainsController(Controller):
    path = "/admin/domains"
    tags = ("admin",)
    guards = [admin_guard]  # noqa: RUF012 - Litestar's declaration style

    @get("/", summary="The loaded domain definitions")
    async def list_domains(self, request: Request[Any, Any, Any], services: Services) -> dict[str, Any]:
        return _domains_view(_classifier(services))

    @post("/reload", status_code=200, summary="Re-read the domain files; an invalid set is refused (422)")
    async def reload(self, request: Request[Any, Any, Any], services: Services) -> dict[str, Any]:
        classifier = _classifier(services)
        await classifier.areload(services.settings.domains_dir)
        return _domains_view(classifier)
