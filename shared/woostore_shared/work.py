"""Work for the provisioner (commands), kept apart from the store events (facts).

A store event says what happened and is published once, for anyone to follow (the stream
``STORES``, subjects ``store.>``). A work order asks a provisioner to look at a store on one
lane (the stream ``WORK``, subjects ``work.<lane>.<store_id>``); the worker reads the store's
status to know what is left to do, so an order that arrives twice, late, or after the store
moved on does no harm. When work is lost, the reaper sends a fresh order; nobody reading the
store events ever sees a repeat.

| Lane | Sent when | The worker |
|---|---|---|
| provision | a store is requested, or the pool refilled | makes it, step by step: ready (pooled) |
| personalise | an owner claims a pooled store | makes it its owner's, and ready |
| change | an upgrade or rollback is requested | changes a ready store; it ends ready either way |
| removal | a store is deleted, or fails | deletes it, or cleans up what a failed store left |
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

WORK_SUBJECT_PREFIX = "work"

# The retry budget of work, by redelivery (the provisioner retries in place first, see its
# retries.py): JetStream delivers an order at most MAX_DELIVER times, and the reaper sends a
# store's provisioning or change again at most MAX_REPLAYS times before it gives up on it
# (failing the store, or ending the change as failed). Removal is sent again until it is done.
MAX_DELIVER = 5
MAX_REPLAYS = 3


class Lane(StrEnum):
    PROVISION = "provision"
    PERSONALISE = "personalise"  # a store claimed from the warm pool made its owner's
    CHANGE = "change"
    REMOVAL = "removal"  # deleting a store, or cleaning up after a failed one


def work_subject(lane: Lane, store_id: uuid.UUID) -> str:
    return f"{WORK_SUBJECT_PREFIX}.{lane.value}.{store_id}"


def lane_subjects(lane: Lane) -> str:
    """Every store's orders on ``lane``: its consumer's filter."""
    return f"{WORK_SUBJECT_PREFIX}.{lane.value}.*"


class WorkOrder(BaseModel):
    """The message: which store to look at, on which lane. Its id is the message id the
    server de-duplicates on, so an order relayed twice is delivered once."""

    id: uuid.UUID
    lane: Lane
    store_id: uuid.UUID
    correlation_id: str
    time: datetime
    # The trace the work continues (W3C Trace Context): the request's that asked for it.
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def subject(self) -> str:
        return work_subject(self.lane, self.store_id)
