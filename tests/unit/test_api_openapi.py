"""The OpenAPI document matches what the API serves: every route (path and method) is
documented, nothing is documented that is not served, every operation lists the errors it
answers in the one error shape, and the document is JSON that OpenAPI 3.1 tools can read."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.routing import Route

from gateway.web.api.app import ROUTES
from gateway.web.api.openapi import document

CONVERTER = re.compile(r"\{(\w+):\w+\}")


def served() -> set[tuple[str, str]]:
    found = set()
    for route in ROUTES:
        assert isinstance(route, Route)
        path = CONVERTER.sub(r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                found.add((path, method.lower()))
    return found


def documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_route_served() -> None:
    spec = document()
    assert served() == documented(spec)
    assert len(served()) == 10


def test_path_parameters_are_declared_and_every_reference_resolves() -> None:
    spec = document()
    assert spec["openapi"] == "3.1.0" and spec["servers"] == [{"url": "/api/v1"}]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            assert operation["operationId"] and operation["responses"]
    text = json.dumps(spec)
    for reference in set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', text)):
        assert reference in spec["components"]["schemas"], reference


def test_every_error_answer_has_the_one_error_shape() -> None:
    spec = document()
    error = {"$ref": "#/components/schemas/Error"}
    for item in spec["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == error
    shape = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert shape["required"] == ["code", "message", "details"]


def test_the_document_says_how_to_authenticate_and_that_no_csrf_is_needed() -> None:
    spec = document()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from `gateway users apikey create`",
    }
    assert spec["security"] == [{"apiKey": []}]
    assert "CSRF" in spec["info"]["description"] and "cookie" in spec["info"]["description"]
    assert spec["paths"]["/openapi.json"]["get"]["security"] == []
