"""Processing reported events: the smallest complete task, to copy from."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from ..jobs import TaskContext, task
from ..models import Event


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


@task()
async def purge_processed_events(ctx: TaskContext) -> None:
    """Delete events processed more than 30 days ago (run nightly by the arq worker)."""
    cutoff = datetime.now(UTC) - timedelta(days=30)
    async with ctx.resources.sessions() as session:
        purged = await session.scalars(
            delete(Event).where(Event.processed_at < cutoff).returning(Event.id)
        )
        count = len(purged.all())
        await session.commit()
    ctx.log.info("events_purged", count=count)
