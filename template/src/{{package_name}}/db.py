"""The database: engine, sessions and table creation.

Each request gets its own session (see `deps.SessionDep`) and each task opens
its own from `ctx.resources.sessions`: a session is never shared between a
request and the work it schedules.
"""

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .models import Base


def create_engine(database_url: str) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(url)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_tables(engine: AsyncEngine) -> None:
    """Create missing tables. Swap in Alembic once the schema has to evolve."""
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
