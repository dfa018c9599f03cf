"""One acting reaper: a PostgreSQL advisory lock, held by the reaper's one connection.

Whichever reaper holds the lock acts; the others wait and try again each pass. If the
leader dies or loses its connection, PostgreSQL releases the lock and another takes over.

A reaper works on a single connection (:func:`reaper_database`), kept open however long it
sits idle, and its session holds the lock. So the passes run on the session that holds the
lock. A connection lost takes the lock with it: the new one the pool opens in its place
takes the lock again before any statement runs on it, and is refused if another reaper
took it meanwhile, so a pass never goes on without the lock. It also keeps one PostgreSQL
process rather than two (15-19 MB of RSS, docs/benchmarks.md, the footprint of ``make run``).

The lock is a session's, not a transaction's: no transaction is left open between passes,
which an operator's ``idle_in_transaction_session_timeout`` (common on managed PostgreSQL)
would end by cutting the session, and the lock with it.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from woostore_shared.db import Database
from woostore_shared.logging import get_logger
from woostore_shared.settings import Settings

log = get_logger(__name__)
LOCK_KEY = zlib.crc32(b"woostore-reaper")  # any constant; the name says whose it is

# Kept if this session holds it, else taken if free. Not taken again when held: a session
# lock taken twice must be released twice. pg_locks shows a bigint key as its high half
# (classid, 0 here) and its low half (objid), objsubid 1.
_KEEP_OR_TAKE = text(
    "SELECT CASE WHEN EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_backend_pid() AND classid = 0 AND objid = :key AND objsubid = 1)"
    " THEN true ELSE pg_try_advisory_lock(:key) END"
)

_RELEASE = text("SELECT pg_advisory_unlock(:key)")


# The longest the reaper's connection may be in use before its readiness says so: a pass
# with nothing to do takes 233 ms at 10,000 stores (docs/benchmarks.md); one waiting this
# long waits on another's row locks.
LONGEST_IN_USE_SECONDS = 30.0


def reaper_database(settings: Settings) -> Database:
    """The reaper's database: one connection, which PostgreSQL never ends for being idle
    (whatever ``database_idle_seconds`` says), since its session holds the leader lock."""
    return Database(settings.database_url, "woostore-reaper", closed_when_idle=0, connections=1)


class LostTheLock(Exception):
    """The leading reaper's connection was lost, and another reaper took the lock before a
    new connection could take it again: what was running on the connection stops."""


class LeaderLock:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.leading = False
        event.listen(db.engine.sync_engine, "connect", self._take_again)

    async def held(self) -> bool:
        """Whether this reaper leads now: keeps the lock, or takes it if free."""
        try:
            async with self.db.session() as session:
                connection = await session.connection()
                result = await connection.execute(_KEEP_OR_TAKE, {"key": LOCK_KEY})
                leading, why = bool(result.scalar()), None
        except LostTheLock:
            return False  # told as it was found
        except SQLAlchemyError as error:  # a standby says nothing: its readiness says why
            leading, why = False, type(error).__name__
        if self.leading and not leading:
            log.warning("lost the leader lock", error=why)
        elif leading and not self.leading:
            log.info("leading: this reaper acts")
        self.leading = leading
        return leading

    def _take_again(self, dbapi: Any, _record: ConnectionPoolEntry) -> None:
        """A connection the pool opens while this reaper leads replaces one lost, and the
        lock went with it: taken again on the new one before any statement runs on it, or
        the connection is refused if another reaper took the lock meanwhile."""
        if not self.leading:
            return
        dbapi.autocommit = True
        cursor = dbapi.cursor()
        try:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            taken = bool(cursor.fetchone()[0])
        finally:
            cursor.close()
            dbapi.autocommit = False
        if not taken:
            self.leading = False
            log.warning("lost the leader lock with its connection: another reaper leads")
            dbapi.close()
            raise LostTheLock

    async def release(self) -> None:
        """Let another reaper take over at once, rather than when this one's session ends."""
        if self.leading:
            self.leading = False
            with contextlib.suppress(SQLAlchemyError):  # lost with the connection, then
                async with self.db.session() as session:
                    connection = await session.connection()
                    await connection.execute(_RELEASE, {"key": LOCK_KEY})


class InUseTooLong(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"its one connection has been in use for {seconds:.0f} s: a statement waits, "
            "look for the locks it waits on (pg_locks)"
        )


class DatabaseReadiness:
    """``/readyz``'s look at the reaper's database. Its one connection is taken in turn: a
    ping waiting for it behind a pass timed out whenever a statement of the pass took over
    the check's 2 s, and the reaper was told not ready while it worked. A connection in use
    is one that works, unless in use for over ``longest`` seconds; a free one is pinged."""

    def __init__(self, db: Database, longest: float = LONGEST_IN_USE_SECONDS) -> None:
        self.db = db
        self.longest = longest
        self._taken_at: float | None = None
        event.listen(db.engine.sync_engine.pool, "checkout", self._taken)
        event.listen(db.engine.sync_engine.pool, "checkin", self._given_back)

    async def __call__(self) -> None:
        if self._taken_at is None:
            await self.db.ping()
        elif (seconds := time.monotonic() - self._taken_at) > self.longest:
            raise InUseTooLong(seconds)

    def _taken(self, *_: object) -> None:
        self._taken_at = time.monotonic()

    def _given_back(self, *_: object) -> None:
        self._taken_at = None
