"""What every request's input must be, whatever its route, and what a refusal shows of it.

A 422 never shows a secret: FastAPI's errors carry the refused value (`input`), which
for a field such as `password` is the password, and which the idempotency store would
keep and replay. `validation_failed` hides it (`logging.is_secret`).

PostgreSQL cannot store the NUL character (U+0000) in text, and SQLite stores it, so
the same request would be a 500 on one database and a row on the other. A JSON string may
also spell half of a UTF-16 surrogate pair alone (`"\\ud800"`), which is no character:
neither database can encode it (a 500 on both). Every request with either in a path or
query parameter, a JSON string (key or value), a form field or an uploaded file's name is
refused alike, before its route runs: a 422 that names the field, in the shape of
FastAPI's own, without the value (it may be a password).
"""

import json
import re
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from .logging import is_secret, without_secrets

REFUSED = re.compile("[\x00\ud800-\udfff]")
"""The NUL character and the surrogates, which a string holds only unpaired."""
SURROGATE = re.compile("[\ud800-\udfff]")
REFUSED_IN_JSON = re.compile(rb"\\u(0000|[dD][89a-fA-F])")
"""How JSON spells them: as escapes, never raw."""
ERRORS = {
    "nul_character": "The NUL character (U+0000) is not allowed",
    "unpaired_surrogate": "An unpaired surrogate (U+D800 to U+DFFF) is not a character",
}
RULES = (
    "Every request: no string or object key may hold the NUL character (U+0000) or an "
    "unpaired surrogate (U+D800 to U+DFFF), anywhere in a path, query, JSON body or form "
    "(422, naming the field). "
    "A 422 never shows the value of a field named as a secret (password, token, key)."
)
"""What the OpenAPI document says of every operation (its `info.description`)."""


async def refuse_unstorable_characters(request: Request) -> None:
    """An app-wide dependency: raise a 422 for each field that holds a NUL character or an
    unpaired surrogate."""
    found: list[tuple[tuple[str | int, ...], str]] = [
        (("path", name), text)
        for name, value in request.path_params.items()
        if REFUSED.search(text := str(value))
    ]
    query = [(name, name + value) for name, value in request.query_params.multi_items()]
    found += [(("query", name), text) for name, text in query if REFUSED.search(text)]
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json") or content_type.endswith("+json"):
        body = await request.body()
        if REFUSED_IN_JSON.search(body):
            with suppress(ValueError):  # not JSON: the route's own parsing answers
                places = refused_places(json.loads(body))
                found += [(("body", *where), text) for where, text in places]
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        for name, value in (await request.form()).multi_items():
            text = name + ((value.filename or "") if isinstance(value, UploadFile) else value)
            if REFUSED.search(text):
                found.append((("body", name), text))
    if found:
        raise RequestValidationError([refusal(loc, text) for loc, text in found])


def refusal(loc: tuple[str | int, ...], text: str) -> dict[str, Any]:
    """FastAPI's error for the field at `loc`, whose `text` holds a refused character."""
    kind = "nul_character" if "\x00" in text else "unpaired_surrogate"
    return {"type": kind, "loc": loc, "msg": ERRORS[kind]}


def refused_places(
    value: Any, where: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Where in a parsed JSON document a string (or an object's key) holds a refused
    character, and that string."""
    if isinstance(value, str):
        if REFUSED.search(value):
            yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if REFUSED.search(key):
                yield (*where, SURROGATE.sub("\ufffd", key)), key  # UTF-8 cannot show it
            else:
                yield from refused_places(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from refused_places(item, (*where, index))


async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, less the secrets: no value of a field whose name says it is one,
    whether the error is about that field or quotes the body around it."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for refused in exc.errors():
        error = dict(refused)
        if any(is_secret(part) for part in error.get("loc", ()) if isinstance(part, str)):
            error.pop("input", None)
        elif "input" in error:
            error["input"] = without_secrets(error["input"])
        errors.append(error)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def document_unparsable_bodies(app: FastAPI) -> None:
    """Say in `app`'s OpenAPI document that an operation with a body answers 400 to one it
    cannot parse (bytes that are not UTF-8 JSON, malformed multipart): FastAPI answers so
    before any route runs, and its document says nothing of it."""
    make_document = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        document = make_document()
        if first:
            for path in document["paths"].values():
                for operation in path.values():
                    if "requestBody" in operation:
                        operation["responses"].setdefault("400", UNPARSABLE)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


UNPARSABLE = {"description": "The body cannot be parsed (not UTF-8 JSON, malformed multipart)"}
