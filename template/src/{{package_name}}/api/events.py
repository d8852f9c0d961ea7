"""POST /events: store an event and process it after the response."""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import LoggerDep, SessionDep, TasksDep
from ..idempotency import Idempotent, IdempotentRoute
from ..models import Event
from ..tasks.events import process_event

router = APIRouter(tags=["events"], route_class=IdempotentRoute)


class EventIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["signup_completed"])
    data: dict[str, Any] = Field(default_factory=dict)


class EventOut(BaseModel):
    id: int
    name: str
    jobs: list[str]
    """Ids of the tasks the request scheduled."""


@router.post("/events", status_code=202, dependencies=[Idempotent])
async def create_event(
    body: EventIn, session: SessionDep, tasks: TasksDep, log: LoggerDep
) -> EventOut:
    event = Event(name=body.name, data=body.data)
    session.add(event)
    await session.flush()  # gives the row its id; the request commits it with its jobs
    job_id = await tasks.enqueue(process_event, event.id)
    log.info("event_stored", event_id=event.id)
    return EventOut(id=event.id, name=event.name, jobs=[job_id])
