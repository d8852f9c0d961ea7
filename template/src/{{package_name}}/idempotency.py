"""Client retries: the `Idempotency-Key` request header.

A client that sends `Idempotency-Key: "<a new UUID>"` with a POST may send the same
request again when it did not hear the answer (a timeout, a dropped connection): the
retry gets the first response back, marked `Idempotent-Replayed: true`, and nothing
runs again. Without the header a request runs as it always does. After
draft-ietf-httpapi-idempotency-key-header:

- The first request with a key reserves it, in a short transaction of its own, then
  runs. Its response is stored in the route's own transaction: an order and its key
  commit together, or neither does.
- A retry while the first still runs answers 409 (with Retry-After). The same key on
  another route, or with another query string or body, answers 422.
- A 4xx is stored and replayed like a success. A 5xx or an unexpected error releases
  the key, so that a retry runs for real.
- A request holds its key for `idempotency_lease_seconds`. When its process died,
  a retry after that runs in its place; a first request that was only slow finds its
  key taken when it ends, and is rolled back (409): one of them commits, never both.
- A key is remembered for `idempotency_key_ttl_seconds` after its first use; expired
  keys are deleted as new ones are reserved.

No crash can commit a request's work without its stored response, nor run it twice:
they are one transaction. What a crash can still cost is time: a request killed after
it reserved its key (or whose commit failed) holds the key until its lease ends, and
retries get 409 until then. A 4xx raised by a route is stored just after the route's
transaction rolled back, in a transaction of its own: a crash between the two leaves
the key to its lease, and the retry runs again (nothing of the first was committed).

A route opts in with `dependencies=[Idempotent]`, on a router made with
`APIRouter(route_class=IdempotentRoute)`.
"""

import hashlib
import inspect
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import anyio
from fastapi import Depends, Header, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy import Delete, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningUpdate
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from structlog.typing import FilteringBoundLogger

from .deps import SessionDep
from .logging import get_logger, get_request_id, new_id
from .models import IdempotencyKey, as_utc, utcnow
from .resources import get_resources
from .settings import Settings, get_settings

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
RETRY_AFTER_SECONDS = 1
"""What a 409 tells a client to wait: most requests end well within it."""
PURGE_BATCH = 100
"""Expired keys deleted, at most, each time a key is reserved."""
CHUNK_BYTES = 64 * 1024

_KEY_CHARS = r"[!#-\[\]-~]{1,255}"
_KEY = re.compile(rf'"({_KEY_CHARS})"|({_KEY_CHARS})')
"""1 to 255 visible ASCII characters but `"` and `\\`, bare or quoted (the draft's syntax:
`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`)."""
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
_RESERVATION = "idempotency_reservation"
"""Where a request keeps its `Reservation`: in its ASGI scope."""
_KEY_DOC = (
    "Makes a retry safe: send a new random key (a UUID) with each new request, and the "
    "same key when you send that request again. A retry gets the first response back, "
    f"marked `{REPLAYED_HEADER}: true`, and nothing runs twice. While the first request "
    "runs, a retry gets 409; the key with another body or on another route gets 422. A key "
    "is remembered for 24 hours (the setting idempotency_key_ttl_seconds). 1 to 255 "
    "visible ASCII characters, bare or in double quotes."
)
_IN_FLIGHT_DOC = f"A request with the same {HEADER} is still in progress: retry after Retry-After"

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
"""What FastAPI makes of a route: request in, response out."""


@dataclass(frozen=True)
class StoredResponse:
    """The response to the request that first carried a key."""

    status_code: int
    headers: list[list[str]]
    body: bytes
    request_id: str | None


class AnsweredBefore(Exception):  # noqa: N818 (not an error: it carries a stored response)
    """The request was answered before: `response` is that answer, to send again."""

    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass(frozen=True)
class Reservation:
    """A key this request holds, and how to settle it when the request ends."""

    key: str
    holder: str
    session: AsyncSession
    """The route's session: a response is stored in its transaction."""
    sessions: async_sessionmaker[AsyncSession]
    log: FilteringBoundLogger

    async def settle(self, response: Response) -> None:
        """Store the route's `response` with the key in the route's transaction, which
        commits next, before the response is sent; release the key on a 5xx."""
        body = getattr(response, "body", None)  # a streamed response has none to store
        if response.status_code >= 500 or not isinstance(body, bytes):
            await self.session.execute(release(self.key, self.holder))
            return
        if await self.session.scalar(store(self.key, self.holder, response, body)) is None:
            self.log.warning("idempotency_key_lost", hint="raise idempotency_lease_seconds")
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"This request took longer than its {HEADER} is held for, and a retry with "
                "the same key ran in its place: this one was rolled back. Send it again with "
                "the same key to get that retry's response.",
            )

    async def settle_error(self, request: Request, error: Exception) -> None:
        """The route raised `error`: store the 4xx the app answers for it, or release the
        key (a 5xx, an unexpected error) so that a retry runs for real."""
        try:
            # First end the route's transaction: on SQLite it may hold the write lock.
            await self.session.rollback()
            response = await handled_response(request, error)
            body = getattr(response, "body", None)
            async with self.sessions.begin() as session:
                if response is None or response.status_code >= 500 or not isinstance(body, bytes):
                    await session.execute(release(self.key, self.holder))
                else:
                    await session.execute(store(self.key, self.holder, response, body))
        except Exception:
            # The key stays in flight until its lease ends; then a retry runs.
            self.log.exception("idempotency_key_not_settled")


async def reserve_idempotency_key(
    request: Request,
    session: SessionDep,
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description=_KEY_DOC,
            # Documented, not checked by FastAPI: `parse_key` refuses with its own sentence.
            json_schema_extra={
                "pattern": f"^(?:{_KEY.pattern})$",
                "minLength": 1,
                "maxLength": 257,
            },
        ),
    ] = None,
) -> None:
    """Reserve the request's key, or answer for it: the stored response again, 409 while
    the first request is in flight, 422 for a key that belongs to another request."""
    if not isinstance(request.scope.get("route"), IdempotentRoute):
        raise RuntimeError(
            "Idempotent needs its route's router made with APIRouter(route_class=IdempotentRoute)"
        )
    if key is None:
        return
    key = parse_key(request.headers.getlist(HEADER))
    settings, resources = await get_settings(request), await get_resources(request)
    fingerprint = await request_fingerprint(request)
    log = await get_logger(request)
    async with resources.sessions() as own_session:
        taken = await take_key(own_session, request, key, fingerprint, settings)
    if isinstance(taken, StoredResponse):
        log.info("idempotent_request_replayed", first_request_id=taken.request_id)
        raise AnsweredBefore(replayed(taken))
    request.scope[_RESERVATION] = Reservation(key, taken, session, resources.sessions, log)


Idempotent = Depends(reserve_idempotency_key)
"""`dependencies=[Idempotent]`: the route honours `Idempotency-Key` (see the module)."""


def parse_key(values: list[str]) -> str:
    """The key that a request's `Idempotency-Key` headers (`values`) carry; 422 if unusable."""
    if len(values) != 1:
        raise invalid_key(
            "idempotency_key_repeated", f"Send one {HEADER} header, not {len(values)}.", values
        )
    match = _KEY.fullmatch(values[0])
    if match is None:
        raise invalid_key(
            "idempotency_key_invalid",
            f"The {HEADER} must be 1 to 255 visible ASCII characters (no space, quote or "
            "backslash), bare or in double quotes: a UUID is best.",
            values[0],
        )
    return match[1] or match[2]


def invalid_key(kind: str, message: str, value: Any) -> RequestValidationError:
    """A 422 about the `Idempotency-Key` header, shaped as FastAPI shapes its own."""
    error = {"type": kind, "loc": ("header", HEADER), "msg": message, "input": value}
    return RequestValidationError([error])


async def request_fingerprint(request: Request) -> str:
    """sha256 of what the request asks beyond its route: its query string and body.

    A form counts by its fields and files, not by its bytes: a client that sends it
    again frames it anew (another multipart boundary), and it is the same request.
    """
    digest = hashlib.sha256(framed(request.url.query.encode()))
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in _FORMS:
        digest.update(framed(await request.body()))
        return digest.hexdigest()
    for name, value in (await request.form()).multi_items():  # parsed already: cached
        if isinstance(value, UploadFile):
            filename, file_type = value.filename or "", value.content_type or ""
            file_hash = await file_digest(value)
            digest.update(framed(name.encode(), filename.encode(), file_type.encode(), file_hash))
        else:
            digest.update(framed(name.encode(), value.encode()))
    return digest.hexdigest()


def framed(*fields: bytes) -> bytes:
    """`fields` joined, each after its length: ("ab", "c") and ("a", "bc") differ."""
    return b"".join(len(field).to_bytes(8, "big") + field for field in fields)


async def file_digest(file: UploadFile) -> bytes:
    """sha256 of an uploaded file's content; the route then reads it from its start."""
    digest = hashlib.sha256()
    await file.seek(0)
    while chunk := await file.read(CHUNK_BYTES):
        digest.update(chunk)
    await file.seek(0)
    return digest.digest()


async def take_key(
    session: AsyncSession, request: Request, key: str, fingerprint: str, settings: Settings
) -> str | StoredResponse:
    """Reserve `key` for `request` and return the holder id it now has; or return the
    response of the request that already ended with this key. Raise 409 while that
    request is in flight, 422 when the key belongs to another request."""
    now = utcnow()
    holder = new_id()
    reservation = {
        "method": request.method,
        "path": request.url.path,
        "fingerprint": fingerprint,
        "holder": holder,
        "request_id": get_request_id(request),
        "lease_until": now + timedelta(seconds=settings.idempotency_lease_seconds),
        "status_code": None,
        "headers": None,
        "body": None,
        "created_at": now,
        "expires_at": now + timedelta(seconds=settings.idempotency_key_ttl_seconds),
    }
    # A write first: on SQLite it takes the write lock before the read below, so that no
    # other writer slips in between.
    await delete_expired(session, key, now)
    row = await session.get(IdempotencyKey, key)
    if row is None:
        session.add(IdempotencyKey(key=key, **reservation))
        try:
            await session.commit()
        except IntegrityError:  # another request with this key reserved it a moment ago
            raise in_flight() from None
        return holder
    if (row.method, row.path) != (request.method, request.url.path):
        raise invalid_key(
            "idempotency_key_reused",
            f"This {HEADER} was first used for {row.method} {row.path}: a key stands for "
            "one request. Send a new key with a new request.",
            key,
        )
    if row.fingerprint != fingerprint:
        raise invalid_key(
            "idempotency_key_reused",
            f"This {HEADER} was first used with another request body: a key stands for one "
            "request. Send a new key with a new request, or the first body with this one.",
            key,
        )
    if row.status_code is not None:
        return StoredResponse(row.status_code, row.headers or [], row.body or b"", row.request_id)
    if row.lease_until is not None and as_utc(row.lease_until) > now:
        raise in_flight()
    # The first request's lease ran out: its process died, or it is slow. This one takes
    # its place; the first one, if it ever ends, finds the key taken and rolls back.
    taken = await session.scalar(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.key == key,
            IdempotencyKey.holder == row.holder,
            IdempotencyKey.status_code.is_(None),
        )
        .values(reservation)
        .returning(IdempotencyKey.key)
    )
    await session.commit()
    if taken is None:  # another retry took it first, or the first one ended just now
        raise in_flight()
    return holder


async def delete_expired(session: AsyncSession, key: str, now: datetime) -> None:
    """Delete `key` if it expired, and a batch of other expired keys (on PostgreSQL,
    skipping those that another transaction is deleting)."""
    expired = (
        select(IdempotencyKey.key)
        .where(IdempotencyKey.expires_at <= now)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.expires_at <= now,
            (IdempotencyKey.key == key) | IdempotencyKey.key.in_(expired.scalar_subquery()),
        )
    )


def in_flight() -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"A request with this {HEADER} is still in progress. Retry after it ends: the retry "
        "gets its response.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def store(key: str, holder: str, response: Response, body: bytes) -> ReturningUpdate[tuple[str]]:
    """The UPDATE that stores `response` with `key`, if `holder` still holds it."""
    headers = [
        [name.decode("latin-1"), value.decode("latin-1")]
        for name, value in response.raw_headers
        if name != b"content-length"
    ]
    return (
        update(IdempotencyKey)
        .where(
            IdempotencyKey.key == key,
            IdempotencyKey.holder == holder,
            IdempotencyKey.status_code.is_(None),
        )
        .values(status_code=response.status_code, headers=headers, body=body, lease_until=None)
        .returning(IdempotencyKey.key)
    )


def release(key: str, holder: str) -> Delete:
    """The DELETE that frees `key`, if `holder` still holds it."""
    return delete(IdempotencyKey).where(
        IdempotencyKey.key == key,
        IdempotencyKey.holder == holder,
        IdempotencyKey.status_code.is_(None),
    )


def replayed(stored: StoredResponse) -> Response:
    """`stored`, to send again, marked as a replay."""
    response = Response(stored.body, status_code=stored.status_code)
    response.raw_headers.extend(
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in stored.headers
    )
    response.headers[REPLAYED_HEADER] = "true"
    return response


async def handled_response(request: Request, error: Exception) -> Response | None:
    """The response that the app's exception handlers make of `error`, as Starlette picks
    the handler; None when none takes it (it becomes a 500)."""
    handlers = request.app.exception_handlers
    handler = None
    if isinstance(error, StarletteHTTPException):
        handler = handlers.get(error.status_code)
    if handler is None:
        handler = next((handlers[kind] for kind in type(error).__mro__ if kind in handlers), None)
    if handler is None:
        return None
    response = handler(request, error)
    if inspect.isawaitable(response):
        response = await response
    return response  # type: ignore[no-any-return]


class IdempotentRoute(APIRoute):
    """The route class of a router with idempotent routes (`dependencies=[Idempotent]`):
    their responses are stored with their keys, in the route's transaction, and replayed.
    The router's other routes are left as they are."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        dependencies = kwargs.get("dependencies") or []
        self.idempotent = any(d.dependency is reserve_idempotency_key for d in dependencies)
        if self.idempotent:
            kwargs["responses"] = with_in_flight_response(kwargs.get("responses"))
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        return settling(handler) if self.idempotent else handler


def settling(handler: Handler) -> Handler:
    """`handler`, which then settles the request's key by how it ended. It runs inside the
    route's transaction: that commits after it returns, and rolls back if it raises."""

    async def handle(request: Request) -> Response:
        try:
            response = await handler(request)
        except AnsweredBefore as answered:
            return answered.response
        except Exception as error:
            reservation: Reservation | None = request.scope.get(_RESERVATION)
            if reservation is not None:
                with anyio.CancelScope(shield=True):
                    await reservation.settle_error(request, error)
            raise
        reservation = request.scope.get(_RESERVATION)
        if reservation is not None:
            await reservation.settle(response)
        return response

    return handle


def with_in_flight_response(responses: dict[int | str, Any] | None) -> dict[int | str, Any]:
    """`responses` (a route's OpenAPI responses) with the 409 of a key in flight."""
    responses = dict(responses or {})
    conflict = responses.get(409, {})
    own = conflict.get("description")
    description = f"{own}; or: {_IN_FLIGHT_DOC}" if own else _IN_FLIGHT_DOC
    responses[409] = {**conflict, "description": description}
    return responses
