"""What a client may ask of a store in the state it is in: the store resource's ``actions``.

Advice for clients (which buttons the dashboard shows), derived from the lifecycle's table so
no client keeps its own copy. It enforces nothing: each request is checked again when it is
made (the lifecycle's transitions, :func:`credentials_readable`) and refused with a 409.
"""

from __future__ import annotations

from typing import Literal

from woostore_shared.lifecycle import ALLOWED, DELETABLE
from woostore_shared.models import StoreStatus

StoreAction = Literal["delete", "upgrade", "rollback", "backup", "restore", "retry", "credentials"]


def credentials_readable(status: StoreStatus, has_password: bool) -> bool:
    """Whether GET /stores/{id}/credentials answers: the store is ready and its password was
    recorded."""
    return status is StoreStatus.READY and has_password


def store_actions(
    status: StoreStatus,
    release_revision: int | None,
    has_password: bool,
    first_revision: int = 1,
    cleaned_up: bool = False,
) -> list[StoreAction]:
    """The requests a store in this state accepts: ``delete`` when it may become deleting,
    ``upgrade`` when it may become updating, ``rollback`` then too if its release has an
    earlier revision to return to (of its owner's: not one from the warm pool before
    ``first_revision``), ``backup`` when it may be backed up, ``restore`` when it may be
    returned to one of its complete backups, ``retry`` when it failed and its clean-up has
    finished, ``credentials`` when they can be read."""
    actions: list[StoreAction] = []
    if status in DELETABLE:
        actions.append("delete")
    if StoreStatus.UPDATING in ALLOWED[status]:
        actions.append("upgrade")
        if release_revision is not None and release_revision > first_revision:
            actions.append("rollback")
    if StoreStatus.BACKING_UP in ALLOWED[status]:
        actions.append("backup")
    if StoreStatus.RESTORING in ALLOWED[status]:
        actions.append("restore")
    if status is StoreStatus.FAILED and cleaned_up:
        actions.append("retry")
    if credentials_readable(status, has_password):
        actions.append("credentials")
    return actions
