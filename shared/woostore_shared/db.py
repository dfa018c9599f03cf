"""The database engine. Migrations are ``migrating.py``, apart: only ``woostore-setup`` and
the tests need Alembic, which would add about 12 MB to every service."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


class Database:
    def __init__(self, url: str, application: str = "") -> None:
        """``application`` names the connections (``pg_stat_activity.application_name``), so an
        operator sees which service holds which; a name the URL or PGAPPNAME gives wins."""
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            connect_args={"fallback_application_name": application} if application else {},
        )

    def session(self) -> AsyncSession:
        """A session for reads; writes go through a ``UnitOfWork`` (unit_of_work.py)."""
        return AsyncSession(self.engine, expire_on_commit=False)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
