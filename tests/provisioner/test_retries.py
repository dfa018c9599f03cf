"""How a failed delivery ends, as a table: the whole of the provisioner's retry decision."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_provisioner.retries import (
    DEFAULT_RETRY_DELAY,
    HAND_BACK_DELAY,
    LeaseLost,
    Outcome,
    Settlement,
    ShuttingDown,
    StoreBusy,
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
