"""How a failed delivery ends, as a table: the whole of the provisioner's retry decision; and
how long it is first retried in place."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from structlog.testing import capture_logs

from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_provisioner.retries import (
    DEFAULT_RETRY_DELAY,
    HAND_BACK_DELAY,
    IN_PLACE_ATTEMPTS,
    LeaseLost,
    Outcome,
    Settlement,
    ShuttingDown,
    StoreBusy,
    retry_in_place,
    settle,
)
from woostore_shared.work import MAX_DELIVER

LAST = MAX_DELIVER


@pytest.mark.parametrize(
    ("error", "deliveries", "can_give_up", "expected"),
    [
        # Another attempt owns the store: this delivery is a duplicate, whenever it comes.
        (StoreBusy(), 1, True, Settlement(Outcome.ACK)),
        (StoreBusy(), LAST, True, Settlement(Outcome.ACK)),
        (LeaseLost(), 2, False, Settlement(Outcome.ACK)),
        # Stopping: another replica resumes the store soon, even on the last delivery.
        (ShuttingDown(), 1, True, Settlement(Outcome.HAND_BACK, HAND_BACK_DELAY)),
        (ShuttingDown(), LAST, True, Settlement(Outcome.HAND_BACK, HAND_BACK_DELAY)),
        # Retried after the delay the cluster asked for, or the default one.
        (TransientClusterError("ingress not ready", 7), 1, True, Settlement(Outcome.RETRY, 7)),
        (OperationalError("select", {}, Exception()), 2, True,
         Settlement(Outcome.RETRY, DEFAULT_RETRY_DELAY)),
        (RuntimeError("surprise"), LAST - 1, True, Settlement(Outcome.RETRY, DEFAULT_RETRY_DELAY)),
        # The last delivery gives up, where the lane may.
        (RuntimeError("surprise"), LAST, True, Settlement(Outcome.GIVE_UP)),
        (TransientClusterError("still down", 7), LAST, True, Settlement(Outcome.GIVE_UP)),
        (PermanentClusterError("bad chart"), LAST + 3, True, Settlement(Outcome.GIVE_UP)),
        # Deletion never gives up.
        (RuntimeError("surprise"), LAST, False, Settlement(Outcome.RETRY, DEFAULT_RETRY_DELAY)),
        (TransientClusterError("still down", 7), LAST + 10, False, Settlement(Outcome.RETRY, 7)),
    ],
)  # fmt: skip
def test_a_failed_delivery_is_settled_by_its_error_and_count(
    error: Exception, deliveries: int, can_give_up: bool, expected: Settlement
) -> None:
    assert settle(error, deliveries, can_give_up=can_give_up) == expected


class Tries:
    """Work that fails with each of ``errors`` in turn, then succeeds; a try may take a while
    first, as a recipe resumed from its journal does. Waits between tries are recorded, not
    waited."""

    def __init__(self, *errors: Exception, first_try_seconds: float = 0.0) -> None:
        self.errors = list(errors)
        self.first_try_seconds = first_try_seconds
        self.count = 0
        self.waits: list[float] = []

    async def work(self) -> None:
        self.count += 1
        if self.count == 1:
            await asyncio.sleep(self.first_try_seconds)  # the try's own work, not a wait
        if self.errors:
            raise self.errors.pop(0)

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_an_error_late_in_a_long_try_is_still_retried_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the waits count against the budget: a try resumes the whole recipe, minutes on
    a real cluster, and an error after them is as worth a retry in place as an early one."""
    monkeypatch.setattr("woostore_provisioner.retries.IN_PLACE_SECONDS", 0.2)
    tries = Tries(TransientClusterError("api server timeout", 0.01), first_try_seconds=0.3)

    await retry_in_place(tries.work, sleep=tries.wait)

    assert (tries.count, tries.waits) == (2, [0.01])


async def test_retries_in_place_stop_when_their_waits_would_pass_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("woostore_provisioner.retries.IN_PLACE_SECONDS", 0.2)
    tries = Tries(*(TransientClusterError("still down", 0.15) for _ in range(3)))

    with pytest.raises(TransientClusterError):
        await retry_in_place(tries.work, sleep=tries.wait)

    assert (tries.count, tries.waits) == (2, [0.15])  # a second wait would make 0.3 s


async def test_retries_in_place_stop_after_their_number_of_tries() -> None:
    tries = Tries(*(TransientClusterError("flapping", 0) for _ in range(IN_PLACE_ATTEMPTS)))

    with pytest.raises(TransientClusterError):
        await retry_in_place(tries.work, sleep=tries.wait)

    assert tries.count == IN_PLACE_ATTEMPTS


async def test_a_database_whose_connections_are_all_in_use_is_retried_in_place() -> None:
    """The pool's wait for a connection is 10 s: a moment's crowding, not a fault of the
    store's, which SQLAlchemy's TimeoutError (not the built-in one) was taken for."""
    tries = Tries(PoolTimeout("QueuePool limit of size 15 overflow 0 reached"))

    await retry_in_place(tries.work, sleep=tries.wait)

    assert tries.count == 2


async def test_waiting_for_a_busy_store_is_said_as_information_and_a_fault_as_a_warning() -> None:
    """A deletion waiting out the provisioning it cancels logged 'transient error' five
    times as warnings (a user's review): nothing was wrong."""
    tries = Tries(StoreBusy(), TransientClusterError("api server timeout", 0))

    with capture_logs() as logged:
        await retry_in_place(tries.work, sleep=tries.wait)

    assert [(entry["log_level"], entry["event"]) for entry in logged] == [
        ("info", "the store is busy with other work; waiting for it"),
        ("warning", "transient error, retrying in place"),
    ]
