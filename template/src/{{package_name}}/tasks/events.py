"""Processing reported events: the smallest complete task, to copy from."""

from datetime import UTC, datetime

from ..models import Event
from .runtime import TaskContext, task


@task()
async def process_event(ctx: TaskContext, event_id: int) -> None:
    """Mark the event processed. `event_id`: the row the request stored."""
    async with ctx.resources.sessions() as session:
        event = await session.get(Event, event_id)
        if event is None:
            ctx.log.warning("event_not_found", event_id=event_id)
            return
        if event.processed_at is not None:
            ctx.log.info("event_already_processed", event_id=event_id)
            return
        event.processed_at = datetime.now(UTC)
        await session.commit()
    ctx.log.info("event_processed", event_id=event_id, name=event.name)
