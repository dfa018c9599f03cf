"""One acting reaper: a PostgreSQL advisory lock, held by a connection kept open.

Whichever reaper holds the lock acts; the others wait and try again each pass. If the
leader dies or loses its connection, PostgreSQL releases the lock and another takes over.

The connection runs in autocommit: a session lock needs no transaction, and one left open
between passes would sit "idle in transaction" for as long as the reaper leads, which an
operator's ``idle_in_transaction_session_timeout`` (common on managed PostgreSQL) ends by
cutting the session, and the lock with it.
"""

from __future__ import annotations

import contextlib
import zlib

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from woostore_shared.db import kept_open_when_idle
from woostore_shared.logging import get_logger

log = get_logger(__name__)
LOCK_KEY = zlib.crc32(b"woostore-reaper")  # any constant; the name says whose it is


class LeaderLock:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._connection: AsyncConnection | None = None
        self.leading = False

    async def held(self) -> bool:
        """Whether this reaper leads now: keeps the lock, or takes it if free."""
        try:
            if self._connection is None:
                connection = await self.engine.connect()
                self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await kept_open_when_idle(self._connection)  # its session holds the lock
            if self.leading:
                await self._connection.execute(text("SELECT 1"))  # the lock lives with it
                return True
            result = await self._connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
            )
            self.leading = bool(result.scalar())
            if self.leading:
                log.info("leading: this reaper acts")
        except SQLAlchemyError as error:
            if self.leading:
                log.warning("lost the leader lock", error=type(error).__name__)
            await self.release()
        return self.leading

    async def release(self) -> None:
        was_leading, self.leading = self.leading, False
        if self._connection is not None:
            connection, self._connection = self._connection, None
            if was_leading:
                # Unlock before letting go: the server notices a closed socket only some
                # time later, and until then no other reaper could take over.
                with contextlib.suppress(SQLAlchemyError):  # else the lock went with it
                    await connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY}
                    )
            # Discard the connection rather than return it to the pool: if the unlock
            # did not reach the server, ending the session is what releases the lock.
            await connection.invalidate()
            await connection.close()
