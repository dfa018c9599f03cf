"""The AsyncAPI 3.0 document of the event contract, built from the event models themselves,
so it cannot drift from what the services publish. The API serves it at
``/api/v1/asyncapi.json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from woostore_shared.events import (
    TYPE_PREFIX,
    BackupCompleted,
    BackupDamaged,
    BackupDeleted,
    BackupFailed,
    BackupStarted,
    Changed,
    ChangeFailed,
    ChangeRequested,
    CleanedUp,
    CloudEvent,
    Deleted,
    DeleteQueued,
    DeleteRequested,
    EndData,
    EventName,
    Failed,
    FellBack,
    Pooled,
    Progress,
    Ready,
    RefetchData,
    Requested,
    Restored,
    RestoreFailed,
    RestoreRequested,
    SourceLost,
)

_DATA: dict[EventName, tuple[type[BaseModel], str]] = {
    EventName.REQUESTED: (
        Requested,
        "A store was requested, or a failed one asked for again (retry: the same id, made from "
        "scratch); it waits in the queue (or, taken from the warm pool, for its "
        "personalisation).",
    ),
    EventName.PROGRESS: (
        Progress,
        "A step of provisioning, a change, a deletion or a failed store's clean-up started or "
        "completed.",
    ),
    EventName.READY: (Ready, "The store passed verification: a test order was placed."),
    EventName.POOLED: (
        Pooled,
        "A store made in advance passed verification and waits in the warm pool. It belongs "
        "to no tenant (tenantid is the nil UUID): the event stream shows it to nobody.",
    ),
    EventName.FELL_BACK: (
        FellBack,
        "The store taken from the warm pool could not be made its owner's: it is discarded, "
        "and the owner's store is made from scratch instead (queued, then provisioning).",
    ),
    EventName.FAILED: (
        Failed,
        "The store failed; the reason is meant for people. Its clean-up follows.",
    ),
    EventName.CLEANED_UP: (
        CleanedUp,
        "What the failed store had made in the cluster is removed; the store stays failed.",
    ),
    EventName.DELETE_REQUESTED: (
        DeleteRequested,
        "The store's deletion began: its owner asked for it (now, or while its last work ran: "
        "delete_queued), or the warm pool retired it.",
    ),
    EventName.DELETE_QUEUED: (
        DeleteQueued,
        "The store's owner asked to delete it while an upgrade, a rollback, a backup or a "
        "restore runs: that work ends first (its own event; a backup is stopped), then "
        "delete_requested follows. Or while a new store is made from one of its backups "
        "(status ready or failed): delete_requested follows once that store is made.",
    ),
    EventName.DELETED: (Deleted, "Every resource of the store is gone."),
    EventName.CHANGE_REQUESTED: (
        ChangeRequested,
        "The owner asked to upgrade the store's release to the platform's chart, or to roll "
        "it back to its previous revision. The store is backed up first (backup_id).",
    ),
    EventName.CHANGED: (Changed, "The upgrade or rollback is done and verified."),
    EventName.CHANGE_FAILED: (
        ChangeFailed,
        "The upgrade or rollback failed; the store runs the release helm restored.",
    ),
    EventName.BACKUP_STARTED: (
        BackupStarted,
        "A backup of the store began: asked for by its owner, its daily one, or the one "
        "taken before an upgrade or rollback. The store keeps serving meanwhile.",
    ),
    EventName.BACKUP_COMPLETED: (
        BackupCompleted,
        "Every part of the backup and its manifest are stored: it can be restored.",
    ),
    EventName.BACKUP_FAILED: (
        BackupFailed,
        "The backup could not be made (the reason is meant for people); what was stored of "
        "it is never listed, and the store is as it was.",
    ),
    EventName.RESTORE_REQUESTED: (
        RestoreRequested,
        "The owner asked to return the store to one of its backups. The store is backed up "
        "first, as it is (safety_backup_id), then restored and verified with a test order.",
    ),
    EventName.RESTORED: (
        Restored,
        "The store holds the backup's database and uploads again and passed verification.",
    ),
    EventName.RESTORE_FAILED: (
        RestoreFailed,
        "The restore could not be finished (the reason is meant for people); the safety "
        "backup holds the store as it was before.",
    ),
    EventName.BACKUP_DELETED: (
        BackupDeleted,
        "A backup was deleted, by its owner or by the operator's retention policy: it is no "
        "longer listed as restorable, and its data is removed from the store's repository "
        "as soon as the store is not busy. The store's status does not change.",
    ),
    EventName.BACKUP_DAMAGED: (
        BackupDamaged,
        "A complete backup was found damaged as a restore or a copy read it (its data "
        "altered or gone from the repository): it is listed as damaged, for the reason "
        "given, and never restored or copied again. The store's status does not change.",
    ),
    EventName.SOURCE_LOST: (
        SourceLost,
        "The backup a copy is made from can be copied no more: deleted, found damaged, or "
        "going with its store, whose deletion was asked for (reason). Failed, or failing "
        "later, the copy is offered no retry. Sent to each copy failed or not made yet, after "
        "the event of its cause; its status does not change.",
    ),
}


# Sent in every event, though the models give them defaults (which leave a field out of a
# schema's required): a consumer may count on them, and the schema says so.
# (Not actions: events recorded before 2026-12-02, still in a 30-day stream, have none.)
_ALWAYS_SENT = {"envelope": ("specversion", "datacontenttype"), "data": ("status",)}


def _message_schema(name: EventName, data: type[BaseModel]) -> dict[str, Any]:
    envelope = CloudEvent.model_json_schema()
    envelope["properties"]["type"] = {"const": TYPE_PREFIX + name.value}
    envelope["properties"]["data"] = data.model_json_schema(ref_template="#/$defs/{model}")
    for schema, always in (
        (envelope, _ALWAYS_SENT["envelope"]),
        (envelope["properties"]["data"], _ALWAYS_SENT["data"]),
    ):
        schema["required"] = sorted({*schema.get("required", []), *always})
    defs = envelope["properties"]["data"].pop("$defs", {})
    if defs:
        envelope.setdefault("$defs", {}).update(defs)
    return envelope


# Where the events are read: each deployment's own addresses, so the hosts are variables
# (their defaults are make run's).
_SERVERS = {
    "jetstream": {
        "host": "{host}",
        "protocol": "nats",
        "description": (
            "The NATS server the platform publishes to (WOOSTORE_NATS_URL), stream STORES. "
            "Read it with a durable consumer of your own, with the credentials the operator "
            "gives you (examples/event_consumer). Every tenant's events are on it."
        ),
        "variables": {"host": {"default": "127.0.0.1:4222"}},
    },
    "notifier": {
        "host": "{host}",
        "protocol": "https",
        "description": (
            "The notifier's Server-Sent Events, at the events_url GET /api/v1/platform gives: "
            "behind the API's own address where an ingress routes /api/v1/events to the "
            "notifier (helm/platform), on a port of its own on make run (8001, plain http). "
            "A key, or a ticket from POST /api/v1/events/ticket, sees its own tenant's "
            "events (an admin key, every tenant's)."
        ),
        "variables": {"host": {"default": "127.0.0.1:8001"}},
    },
}
_SSE = "sse"  # the channel of the notifier's event stream
_REFETCH = "refetch"
_END = "end"


def document(version: str) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, (data, summary) in _DATA.items():
        message_id = f"store_{name.value}"
        messages[message_id] = {
            "name": TYPE_PREFIX + name.value,
            "title": name.value.replace("_", " ").capitalize(),
            "summary": summary,
            "contentType": "application/json",
            "payload": _message_schema(name, data),
        }
        channels[message_id] = {
            "address": f"store.{name.value}.{{store_id}}",
            "servers": [{"$ref": "#/servers/jetstream"}],
            "parameters": {"store_id": {"description": "The store's id (a UUID)."}},
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
        }
        operations[f"receive_{message_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{message_id}"},
            "summary": f"Follow {name.value} events (JetStream stream STORES, or SSE).",
        }
    messages[_REFETCH] = {
        "name": _REFETCH,
        "title": "Refetch",
        "summary": (
            "Sent on the event stream alone, as an SSE event named refetch: the resume point "
            "(Last-Event-ID) cannot be served, so events were missed. Read the stores again; "
            "the frame's id is where the stream goes on."
        ),
        "contentType": "application/json",
        "payload": RefetchData.model_json_schema(),
    }
    messages[_END] = {
        "name": _END,
        "title": "End",
        "summary": (
            "Sent on the event stream alone, as its last frame, an SSE event named end: the "
            "notifier ended the stream for good (reason access-withdrawn: its key was revoked, "
            "or its tenant suspended or deleted). Reconnecting would be refused: stop, and "
            "say why (detail is meant for people)."
        ),
        "contentType": "application/json",
        "payload": EndData.model_json_schema(),
    }
    channels[_SSE] = {
        "address": "/api/v1/events",
        "servers": [{"$ref": "#/servers/notifier"}],
        "description": (
            "Every event the caller may see, each as an SSE frame whose id is its stream "
            "sequence, a refetch frame where a resume cannot be served, and an end frame "
            "where the notifier ends the stream for good."
        ),
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
    }
    operations["receive_sse"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{_SSE}"},
        "summary": "Follow the events of every store the caller sees, over Server-Sent Events.",
    }
    return {
        "asyncapi": "3.0.0",
        "servers": _SERVERS,
        "info": {
            "title": "WooStore store events",
            "version": version,
            "description": (
                "CloudEvents 1.0 in structured JSON on the JetStream stream STORES "
                "(subjects store.>), also streamed over Server-Sent Events at /api/v1/events "
                "by the notifier, with the stream sequence as the SSE id. A resume "
                "(Last-Event-ID) the notifier cannot serve gets an SSE event named refetch, "
                'data {"reason": ...}: read the stores again; its id is where the stream goes on. '
                "A stream whose key's access is withdrawn ends with an SSE event named end, "
                'data {"reason": "access-withdrawn", "detail": ...}: reconnecting would be '
                "refused. Skip a named frame you do not know: it is for later clients. "
                "A stream opened without Last-Event-ID sends new events only, and its first "
                "frame (retry, no data: no event is dispatched) carries the id it starts "
                "after, to resume from should it drop before any event; a ping (every 15 s, "
                "unless events go out at that moment) carries the id the client is at. "
                "Store events are unnamed SSE events (heard by onmessage) unless "
                "?event_names=true is asked for: each is then named after its type's last "
                "part (io.woostore.store.ready: ready), for addEventListener. "
                "?store_id= narrows a stream to one store's events, and an admin's "
                "?tenant_id= to one tenant's; a store or a tenant the key finds nothing of "
                "(that never was, or another tenant's store) is a 404."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
