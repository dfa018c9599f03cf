"""Why a message is retried, and for how long: the provisioner's whole retry budget.

Work on a store is retried at two levels:
1. **In place**, by the runner: an error that says "not now" (``TRANSIENT_ERRORS``: the
   cluster, PostgreSQL or NATS unreachable for a moment, the store's lease still held) is
   retried up to ``IN_PLACE_ATTEMPTS`` times, waiting at most ``IN_PLACE_SECONDS`` in all
   between the tries, holding the message and so the store's slot.
2. **By redelivery**: whatever is left is settled by :func:`settle`, a pure function of the
   error and the delivery count: ack, nak with a delay, hand back, or give up. JetStream
   delivers a work order at most ``MAX_DELIVER`` times.
3. **By a fresh order**: the reaper sends lost provisioning or a lost change again at most
   ``MAX_REPLAYS`` times, then gives up on it; removal is sent again until it is done.

The numbers of 2 and 3 live with the work orders (``woostore_shared.work``), which the reaper
reads too; docs/reliability.md tells the whole story.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from nats.errors import Error as NatsError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as NoConnectionFree
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.stop import stop_base

from woostore_cluster import TransientClusterError
from woostore_shared.backups import BackupLocked
from woostore_shared.logging import get_logger
from woostore_shared.work import MAX_DELIVER

log = get_logger(__name__)


class StoreAbandoned(Exception):
    """The store left the status this work was for (failed by its deadline, say)."""


class DeletionAsked(Exception):
    """The store's deletion was asked for, and the work yields to it (Recipe.yields_to_deletion)."""


class StoreChangedMeanwhile(Exception):
    """A step's progress was written to a store whose row was not as the runner had it, so
    its events were wrong: the transaction was undone. The next try reads the store again."""

    def __init__(self, store_id: uuid.UUID) -> None:
        super().__init__(f"store {store_id} changed under its lease; its step is tried again")


class StoreBusy(Exception):
    """Another attempt holds the store's lease: this delivery is a duplicate."""


class LeaseLost(Exception):
    """This attempt's lease expired and another attempt took the store over."""


class ShuttingDown(Exception):
    """The process is stopping: the work was cut at a safe point, to be resumed elsewhere."""


# Errors that say "not now" rather than "never": retried in place, then by redelivery.
# StoreBusy is among them: a redelivery usually finds the lease of the worker that died a
# moment ago, still valid for a few seconds; waiting it out here keeps the store's slot.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    StoreBusy,
    BackupLocked,  # a repair or a prune of the repository under way (a storage error else)
    StoreChangedMeanwhile,
    TransientClusterError,
    OperationalError,
    InterfaceError,
    NoConnectionFree,  # every pooled database connection stayed in use
    NatsError,
    TimeoutError,
    ConnectionError,
)
IN_PLACE_ATTEMPTS = 8
IN_PLACE_SECONDS = 120.0
_backoff = wait_exponential(multiplier=0.5, max=10)


class _WaitsPast(stop_base):
    """Stop when the next wait would take the waits between tries past ``seconds``. Only the
    waits count: a try is the whole recipe from the journal on (minutes on a real cluster).
    Counted from the first try's start, an error late in a long recipe got no retry in place
    at all, and cost the store one of its deliveries."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.idle_for + retry_state.upcoming_sleep > self.seconds


def _in_place_wait(state: RetryCallState) -> float:
    """The delay the cluster asked for, if it did; otherwise exponential back-off."""
    error = state.outcome.exception() if state.outcome else None
    return error.delay if isinstance(error, TransientClusterError) else _backoff(state)


def _say_why_it_waits(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, StoreBusy):
        # Nothing is wrong: the store's other work (a deletion waits out the provisioning it
        # cancels) holds it. Said as a warning each time, it read as a fault five times over.
        log.info("the store is busy with other work; waiting for it", attempt=state.attempt_number)
        return
    log.warning(
        "transient error, retrying in place", attempt=state.attempt_number, error=repr(error)
    )


async def retry_in_place(
    work: Callable[[], Awaitable[None]], sleep: Callable[[float], Awaitable[None]]
) -> None:
    """Run ``work``, retrying a transient error in place (``sleep`` waits between tries and
    keeps the message alive); what is left propagates, for :func:`settle`."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        stop=stop_after_attempt(IN_PLACE_ATTEMPTS) | _WaitsPast(IN_PLACE_SECONDS),
        wait=_in_place_wait,
        sleep=sleep,
        before_sleep=_say_why_it_waits,
        reraise=True,
    )
    async for try_ in retrying:
        with try_:
            await work()


DEFAULT_RETRY_DELAY = 5.0
# A nak without delay can be redelivered at once to this very process, whose pull request is
# still open while it shuts down, and be lost there until AckWait; a short delay lets it go
# to another replica.
HAND_BACK_DELAY = 2.0


class Outcome(StrEnum):
    ACK = "ack"  # done, or a duplicate delivery: nothing more to do with this message
    RETRY = "retry"  # nak with a delay: JetStream delivers it again
    HAND_BACK = "hand_back"  # nak soon: another replica resumes the store
    GIVE_UP = "give_up"  # end the work as failed, then ack: never stuck


@dataclass(frozen=True)
class Settlement:
    outcome: Outcome
    delay: float = 0.0


def settle(error: Exception, deliveries: int, *, can_give_up: bool = True) -> Settlement:
    """How a delivery whose work raised ``error`` ends. ``deliveries`` counts this one;
    a lane that must never give up (deletion) retries for as long as it takes."""
    if isinstance(error, StoreBusy | LeaseLost):
        # Another attempt owns the store; if it dies, the reaper publishes the work again.
        return Settlement(Outcome.ACK)
    if isinstance(error, ShuttingDown):
        return Settlement(Outcome.HAND_BACK, HAND_BACK_DELAY)
    if deliveries >= MAX_DELIVER and can_give_up:
        return Settlement(Outcome.GIVE_UP)
    delay = error.delay if isinstance(error, TransientClusterError) else DEFAULT_RETRY_DELAY
    return Settlement(Outcome.RETRY, delay)
