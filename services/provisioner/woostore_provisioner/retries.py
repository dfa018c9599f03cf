"""Why a message is retried, and for how long: the provisioner's whole retry budget.

Work on a store is retried at two levels:
1. **In place**, by the runner: an error that says "not now" (``TRANSIENT_ERRORS``: the
   cluster, PostgreSQL or NATS unreachable for a moment, the store's lease still held) is
   retried up to ``IN_PLACE_ATTEMPTS`` times within ``IN_PLACE_SECONDS``, holding the message
   and so the store's slot.
2. **By redelivery**: whatever is left is settled by :func:`settle`, a pure function of the
   error and the delivery count: ack, nak with a delay, hand back, or give up. JetStream
   delivers a message at most ``MAX_DELIVER`` times (``woostore_shared.topology``).

After that the reaper replays lost work a few times more (docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nats.errors import Error as NatsError
from sqlalchemy.exc import InterfaceError, OperationalError

from woostore_cluster import TransientClusterError
from woostore_shared.topology import MAX_DELIVER


class StoreAbandoned(Exception):
    """The store left the status this work was for (failed by its deadline, say)."""


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
    TransientClusterError,
    OperationalError,
    InterfaceError,
    NatsError,
    TimeoutError,
    ConnectionError,
)
IN_PLACE_ATTEMPTS = 8
IN_PLACE_SECONDS = 120.0

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
