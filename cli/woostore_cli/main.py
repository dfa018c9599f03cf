"""woostore: create, follow, inspect and delete WooStore stores, and manage keys, from a
terminal.

Commands and their output: human-readable by default, ``--json`` for scripts. HTTP and the
event stream are in :mod:`woostore_cli.client`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from woostore_cli.client import (
    Api,
    ApiError,
    Event,
    Gap,
    StreamEnded,
    StreamLost,
    Unreachable,
)

DEFAULT_URL = "http://127.0.0.1:8000"
IDLE_SECONDS = 1.0  # `events` without --follow stops once the stream is quiet this long
# Exit codes, as the parser's epilog lists them.
FAILED = 1  # refused by the API, or what was waited for failed or was cancelled
UNREACHABLE = USAGE = 2  # no answer from the API, or a 503; argparse's usage errors exit 2 too
STOPPED_WAITING = 3  # a wait ended before its outcome was known: the store carries on
INTERRUPTED = 130
# The statuses a tenant's store can be in: what `list --status` takes, and what `list --all`
# asks for. Without either, the API's default: every status but deleted (a deleted store
# stays for its history, not to crowd the list). tests/cli/test_commands.py holds this to the
# API's statuses.
STATUSES = (
    "queued", "provisioning", "ready", "updating", "backing_up", "restoring", "failed",
    "deleting", "deleted",
)  # fmt: skip
Store = dict[str, Any]


@dataclass(frozen=True)
class Goal:
    """What `--wait` waits for: the events of one phase, until success or failure."""

    phase: str
    waiting: str  # shown until the first step starts
    success: str
    failure: str | None
    # A goal making the store ready, timed from its owner's request (the store's requested_at:
    # made, claimed, or retried).
    makes: bool = False


CREATE = Goal(phase="provision", waiting="Queued", success="ready", failure="failed", makes=True)
# A store taken from the warm pool is made its owner's in a short recipe of its own.
CLAIM = Goal(
    phase="personalise", waiting="Taken from the warm pool", success="ready", failure="failed",
    makes=True,
)  # fmt: skip
# A failed store made again: the same recipe, timed from the retry, not from its creation.
RETRY = Goal(
    phase="provision", waiting="Queued again", success="ready", failure="failed", makes=True
)
DELETE = Goal(phase="delete", waiting="Deletion requested", success="deleted", failure=None)
CHANGES = {
    change: Goal(phase=change, waiting=f"{change.capitalize()} requested", success="changed",
                 failure="change_failed")
    for change in ("upgrade", "rollback", "settings")
}  # fmt: skip
RESTORE = Goal(
    phase="restore", waiting="Restore requested", success="restored", failure="restore_failed"
)
BACKUP = Goal(
    phase="backup", waiting="Backup requested", success="backup_completed",
    failure="backup_failed",
)  # fmt: skip


# ---- commands ----------------------------------------------------------------------------


# The store settings `create` and `settings` take, as options; each left out takes the
# platform's default (`settings`: stays as it is).
SETTING_OPTIONS = {
    "currency": "ISO 4217 code, e.g. EUR",
    "country": "ISO 3166-1 code, e.g. DE",
    "state": "the state's ISO 3166-2 code within the country, e.g. BY (with --country DE)",
    "language": "WordPress locale, e.g. de_DE",
    "admin_email": "the store admin's email address",
}


def create(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        **({"tenant_id": _tenant(api, args.tenant)} if args.tenant else {}),
        **({"from_backup": args.from_backup} if args.from_backup else {}),
    }
    settings = {name: getattr(args, name) for name in SETTING_OPTIONS}
    settings["sample_products"] = args.sample_products
    if chosen := {name: value for name, value in settings.items() if value is not None}:
        body["settings"] = chosen
    key = args.idempotency_key or uuid.uuid4().hex
    again = (
        f"it may have made the store: run it again with --idempotency-key {key} to be "
        "answered with that one rather than make another"
    )

    def make() -> Store:
        try:
            store: Store = api.call("POST", "/stores", json=body, headers={"Idempotency-Key": key})
        except Unreachable as error:  # the request may have reached it: made, unanswered
            raise Unreachable(f"{error}; {again}") from error
        except ApiError as error:  # a 503 too: its database went away, perhaps at the commit
            nothing_made = str((error.problem or {}).get("type", "")).endswith("/slug-exhausted")
            if error.status != 503 or nothing_made:
                raise
            problem = error.problem and {**error.problem, "idempotency_key": key}
            raise ApiError(503, error.title, f"{error.detail}; {again}", problem,
                           error.retry_after) from error  # fmt: skip
        return store

    # Read before the store is made: reading it after, a failure would end a create that
    # succeeded, with its id unsaid.
    suspended = _suspended(api, body["tenant_id"]) if args.tenant else None
    if not args.wait:
        store = make()
        if suspended:
            _warn(suspended.format(so="its keys cannot reach this store"))
        if (code := _made_before(store, args.json)) is not None:
            return code
        if args.json:
            _print_json(store)
        else:
            print(f"Queued {store['name']}{_tag(store)}: {store['id']}{_queue(store)}")
        return 0
    with api.events(None, notice=_warn) as stream:  # connected before creating: nothing missed
        store = make()
        if suspended:
            _warn(suspended.format(so="its keys cannot reach this store"))
        if (code := _made_before(store, args.json)) is not None:
            return code
        return _follow(stream, store, _goal_of(store) or CREATE, args.json, _look_up(api, store))


def _made_before(store: Store, as_json: bool) -> int | None:
    """A create answered with the store its idempotency key made earlier, no longer being
    made (ready, failed, deleted...): said as it is, not as queued, and a failure when the
    store failed or is deleted, which is not what was asked for. None for one being made."""
    if store["status"] in ("queued", "provisioning"):
        return None
    if as_json:
        _print_json(store)
    else:
        print(f"{store['name']}{_tag(store)}, made before with this idempotency key, is "
              f"{_status(store)}: {store['id']}")  # fmt: skip
    return FAILED if store["status"] in ("failed", "deleting", "deleted") else 0


def delete(api: Api, args: argparse.Namespace) -> int:
    """A store at work is deleted once an upgrade or a restore ends, or its backup is
    stopped; one whose backup a new store is made from, once that store is made."""
    return _ask(
        api, args, "DELETE", f"/stores/{args.id}", DELETE,
        lambda store: f"Deleting {store['name']}{_tag(store)}{_once(store)}: {store['id']}",
    )  # fmt: skip


def change(api: Api, args: argparse.Namespace) -> int:
    """upgrade / rollback: the store's Helm release, which ends ready either way."""
    return _ask(
        api, args, "POST", f"/stores/{args.id}/{args.change}", CHANGES[args.change],
        lambda store: f"{args.change.capitalize()} of {store['name']}{_tag(store)} requested",
    )  # fmt: skip


def change_settings(api: Api, args: argparse.Namespace) -> int:
    """Other settings for a ready store: backed up first, then set, then verified again."""
    chosen = {name: getattr(args, name) for name in SETTING_OPTIONS}
    body = {name: value for name, value in chosen.items() if value is not None}
    if not body:
        _warn("Give " + ", ".join("--" + name.replace("_", "-") for name in SETTING_OPTIONS))
        return USAGE
    return _ask(
        api, args, "POST", f"/stores/{args.id}/settings", CHANGES["settings"],
        lambda store: f"New settings for {store['name']}{_tag(store)} requested: "
        f"{_settings(store['settings'], products=False)}",
        body,
    )  # fmt: skip


def retry(api: Api, args: argparse.Namespace) -> int:
    """A failed store made again from scratch: it follows the create's progress."""
    return _ask(
        api, args, "POST", f"/stores/{args.id}/retry", RETRY,
        lambda store: f"Queued {store['name']}{_tag(store)} again: {store['id']}{_queue(store)}",
    )  # fmt: skip


def create_backup(api: Api, args: argparse.Namespace) -> int:
    """A backup of a ready store; with --wait, followed until it is complete (or failed)."""
    path = f"/stores/{args.id}/backups"
    if not args.wait:
        backup = api.call("POST", path)
        if args.json:
            _print_json(backup)
        else:
            print(f"Backup {backup['id']} of store {args.id} started")
        return 0
    with api.events(None, store=args.id, notice=_warn) as stream:
        backup = api.call("POST", path)
        store = api.call("GET", f"/stores/{args.id}")

        def look_up() -> Store:
            found: Store = api.call("GET", f"{path}/{backup['id']}")
            return found

        return _follow(stream, store, BACKUP, args.json, look_up)


def restore(api: Api, args: argparse.Namespace) -> int:
    """A ready store returned to one of its backups, after a safety backup of it as it is."""
    return _ask(
        api, args, "POST", f"/stores/{args.id}/restore", RESTORE,
        lambda store: f"Restore of {store['name']}{_tag(store)} to backup {args.backup} requested",
        body={"backup_id": args.backup},
    )  # fmt: skip


def delete_backup(api: Api, args: argparse.Namespace) -> int:
    """A backup deleted at once; its data leaves the store's repository once it is not busy."""
    backup = api.call("DELETE", f"/stores/{args.id}/backups/{args.backup}")
    if args.json:
        _print_json(backup)
    elif backup["status"] == "deleted":  # asked again once done
        print(f"Backup {backup['id']} deleted: its data is gone")
    else:
        print(f"Backup {backup['id']} deleted: its data is removed once the store is not busy")
    return 0


def list_backups(api: Api, args: argparse.Namespace) -> int:
    found = api.call("GET", f"/stores/{args.id}/backups")
    if args.json:
        _print_json(found)
        return 0
    if not found["items"]:
        print("No backups.")
        return 0
    _table(
        ("ID", "STATUS", "TRIGGER", "SIZE", "REQUESTED", "DETAIL"),
        [
            (b["id"], b["status"], b["trigger"],  # as the API and the docs write it
             _size(b["size"]) if b["size"] is not None else "", _time(b["requested_at"]),
             b["reason"] or _versions(b))
            for b in found["items"]
        ],
    )  # fmt: skip
    return 0


def _ask(
    api: Api,
    args: argparse.Namespace,
    method: str,
    path: str,
    goal: Goal,
    asked: Callable[[Store], str],
    body: dict[str, Any] | None = None,
) -> int:
    """Ask for a change of a store; with --wait, follow it until it is done (the stream is
    connected first, so nothing is missed)."""
    if not args.wait:
        store = api.call(method, path, json=body)
        if args.json:
            _print_json(store)
        elif _goal_of(store) is None:  # done before it was asked (a deleted store, deleted again)
            _as_it_is(store, as_json=False)
        else:
            print(asked(store))
        return 0
    with api.events(None, store=args.id, notice=_warn) as stream:
        store = api.call(method, path, json=body)
        if _goal_of(store) is None:  # nothing will happen to follow
            return _as_it_is(store, args.json)
        return _follow(stream, store, goal, args.json, _look_up(api, store))


def list_stores(api: Api, args: argparse.Namespace) -> int:
    statuses = args.status or (list(STATUSES) if args.all else [])
    params = {
        **({"status": statuses} if statuses else {}),
        **({"q": args.name} if args.name else {}),
        **({"tenant_id": _tenant(api, args.tenant)} if args.tenant else {}),
    }
    found = api.page_through("/stores", params, args.limit)
    if args.json:
        _print_json(found)
        return 0
    if not found["items"]:
        print("No stores.")
        return 0
    # An admin's list of several tenants' stores names each one's tenant: two stores of one
    # name were told apart by nothing.
    owners = {s["tenant_id"] for s in found["items"]}
    names = _tenant_names(api) if len(owners) > 1 else {}
    tenant = ("TENANT",) if names else ()
    _table(
        ("ID", "NAME", *tenant, "STATUS", "DETAIL", "CREATED"),
        [
            # A tenant made since /tenants was read is named by its id.
            (s["id"], s["name"], *((names.get(s["tenant_id"], s["tenant_id"]),) if names else ()),
             _listed_status(s), _detail(s), _time(s["created_at"]))
            for s in found["items"]
        ],
    )  # fmt: skip
    _say_if_more(found, "stores", args.limit)
    return 0


def _listed_status(store: Store) -> str:
    """A store's status in a list, with what the dashboard's card says too: its deletion
    asked for, and waiting (for its work to end, or for a copy of its backup)."""
    status: str = store["status"]
    to_go = store.get("delete_requested_at") and status not in ("deleting", "deleted")
    return status + (" · to be deleted" if to_go else "") + _tag(store)


def _say_if_more(found: dict[str, Any], what: str, limit: int) -> None:
    """A list cut at --limit says so (on stderr: the table stays whole for a pipe)."""
    if found["next_cursor"] is not None:
        print(f"The first {limit} {what}: --limit {limit * 2} shows more.", file=sys.stderr)


def show(api: Api, args: argparse.Namespace) -> int:
    store = api.call("GET", f"/stores/{args.id}")
    if args.json:
        _print_json(store)
        return 0
    print(store["name"] + _tag(store))
    fields = {
        "id": store["id"],
        "status": store["status"] if store["status"] == "ready" else _status(store),
        "waiting": store.get("waiting_cause"),  # why its current step waits, in words
        "deleting": _once(store)
        and f"asked for {_time(store['delete_requested_at'])}; it starts{_once(store)}",
        "actions": ", ".join(store.get("actions", [])),  # what the store accepts now
        "slug": store["slug"],
        "origin": _origin(store),
        "chart": store.get("chart_version")
        and f"{store['chart_version']} (revision {store['release_revision']})",
        "last change": _last_change(store.get("last_change")),
        "settings": _settings(store.get("settings")),
        "storefront": store["storefront_url"],
        "admin": store["admin_url"],
        "created": _time(store["created_at"]),
        "ready": store["ready_at"] and _time(store["ready_at"]),
        "cleaned up": store.get("cleaned_up_at") and _time(store["cleaned_up_at"]),
        "deleted": store["deleted_at"] and _time(store["deleted_at"]),
    }
    for label, value in fields.items():
        if value:
            print(f"  {label:<11} {value}")
    print(
        "Events" + (" (the latest; earlier ones left out)" if store.get("earlier_events") else "")
    )
    for event in store["events"]:
        kind = event["type"].removeprefix("io.woostore.store.")
        print("  " + _event_line(event["time"], kind, None, event["data"]))
    return 0


def wait(api: Api, args: argparse.Namespace) -> int:
    """Follow a store until what it is doing now ends, as --wait would have: its making, a
    change, a backup, a restore or its deletion. One doing nothing says how it is."""
    # Connected before reading: nothing is missed.
    with api.events(None, store=args.id, notice=_warn) as stream:
        store: Store = api.call("GET", f"/stores/{args.id}")
        goal = _goal_of(store)
        if goal is None:
            return _as_it_is(store, args.json)
        if goal is not BACKUP:
            return _follow(stream, store, goal, args.json, _look_up(api, store))
        path = f"/stores/{args.id}/backups"
        running = [b for b in api.call("GET", path)["items"] if b["status"] == "running"]

        def backup() -> Store:  # the backup being taken: how it ended, if the stream lost it
            found: Store = api.call("GET", f"{path}/{running[0]['id']}")
            return found

        return _follow(stream, store, BACKUP, args.json, backup if running else lambda: store)


def _goal_of(store: Store) -> Goal | None:
    """What a store is doing now, as the goal --wait follows; None: nothing."""
    status = store["status"]
    if store.get("delete_requested_at") and status != "deleted":  # after its work, if busy
        return DELETE
    if status in ("queued", "provisioning"):
        return CLAIM if store.get("origin") == "pool" else CREATE
    if status == "updating":
        return CHANGES.get(store.get("change") or "")
    return {"backing_up": BACKUP, "restoring": RESTORE, "deleting": DELETE}.get(status)


def _once(store: Store) -> str:
    """For a store to be deleted once its work ends: when that is (a backup is stopped for
    it, a change or a restore runs to its end, a store made from its backup is made)."""
    starts = {
        "updating": f"once its {store.get('change')} ends",
        "backing_up": "once its backup is stopped",
        "restoring": "once its restore ends",
        "ready": "once no copy reads its backups",
        "failed": "once no copy reads its backups",
    }
    asked = store.get("delete_requested_at") and store["status"] in starts
    return f" {starts[store['status']]}" if asked else ""


def _as_it_is(store: Store, as_json: bool) -> int:
    """A store doing nothing: 1 if it failed, as a --wait that saw it fail ends."""
    if as_json:
        _print_json(store)
    else:
        print(f"{store['name']}{_tag(store)} is {_status(store)}.")
    return FAILED if store["status"] == "failed" else 0


def credentials(api: Api, args: argparse.Namespace) -> int:
    login = api.call("GET", f"/stores/{args.id}/credentials")
    if args.json:
        _print_json(login)
    else:
        print(f"username  {login['username']}\npassword  {login['password']}")
    return 0


def events(api: Api, args: argparse.Namespace) -> int:
    try:
        return _print_events(api, args)
    except StreamLost as lost:
        _warn(f"woostore: {lost}; resume with --since {lost.after}")
        return UNREACHABLE
    except StreamEnded as ended:
        if args.json:  # a program reads why its stream ended where it reads the rest
            _print_stream_end(ended)
        _warn(str(ended))
        return FAILED


def _print_stream_end(ended: StreamEnded) -> None:
    """The stream's last frame as a JSON line: why it ended (``cause``: a key revoked, its
    tenant suspended or deleted), for a program reading the events."""
    said = {"end": ended.reason, "cause": ended.cause, "detail": ended.detail}
    print(json.dumps(said), flush=True)


def _print_events(api: Api, args: argparse.Namespace) -> int:
    """0 once the stream is over (quiet, without --follow); FAILED for an id to follow on
    from that the stream has not reached."""
    idle = None if args.follow else IDLE_SECONDS
    any_yet = False  # an event or a gap: the stream has answered
    tenant = _tenant(api, args.tenant) if args.tenant else None
    with api.events(args.since, store=args.store, tenant=tenant, idle=idle, notice=_warn) as stream:
        for event in stream:
            if isinstance(event, Event) and not _narrowed_to(event, args.store, tenant):
                continue  # from a notifier older than ?store_id= and ?tenant_id=
            if isinstance(event, Gap) and args.json:  # a program must read its state again
                print(json.dumps({"sequence": event.sequence, "gap": event.reason}), flush=True)
            mistyped = args.since is not None and not any_yet
            if isinstance(event, Gap) and event.reason == "unknown-id" and mistyped:
                # The id asked for, mistyped most likely: only a stream started again loses
                # events so. (Once resumed from an id of its own, the stream was.)
                # Refused, as a store that does not exist is: exit 0 read as the events
                # after it shown, none there were, and --follow went on from the newest.
                _warn(f"No event {args.since} yet: the newest is {event.sequence}. If the "
                      "event stream was started again, events were lost: list the stores "
                      "again to see where they are, then follow on with --since "
                      f"{event.sequence}.")  # fmt: skip
                return FAILED
            elif isinstance(event, Gap):
                _warn(f"Events were lost before event {event.sequence} ({event.reason}); "
                      "list the stores again to see where they are.")  # fmt: skip
            elif args.json:
                _print_event_json(event)
            else:
                line = _event_line(event.cloudevent["time"], event.kind, event.store_id, event.data)
                print(line, flush=True)
            any_yet = True
    return 0


def _narrowed_to(event: Event, store: str | None, tenant: str | None) -> bool:
    return (store is None or event.store_id == store) and (
        tenant is None or event.cloudevent.get("tenantid") == tenant
    )


def whoami(api: Api, args: argparse.Namespace) -> int:
    me = api.call("GET", "/session")
    if args.json:
        _print_json(me)
    else:
        # An admin key belongs to a tenant too, yet acts on every one: said, lest "admin in
        # tenant acme" read as acme's admin alone.
        role = "admin, of every tenant" if me["role"] == "admin" else me["role"]
        print(f"{me['actor']} ({role}) in tenant {me['tenant_name']} ({me['tenant_id']})")
    return 0


def create_key(api: Api, args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "role": args.role,
        **({"tenant_id": _tenant(api, args.tenant)} if args.tenant else {}),
    }
    suspended = _suspended(api, body["tenant_id"]) if args.tenant else None  # before: see create
    key = api.call("POST", "/keys", json=body)
    if args.json:
        _print_json(key)
        return 0
    print(key["token"])
    _warn(
        f"Key {key['prefix']} ({key['role']}) made. This is the only time its token is shown: "
        "store it now (for example in WOOSTORE_TOKEN)."
    )
    if suspended:
        _warn(suspended.format(so="this key is refused"))
    return 0


def list_keys(api: Api, args: argparse.Namespace) -> int:
    params = {"tenant_id": _tenant(api, args.tenant)} if args.tenant else {}
    keys = api.call("GET", "/keys", params=params)
    if args.json:
        _print_json(keys)
        return 0
    # An admin's list of several tenants' keys names each one's tenant, as a list of stores
    # does: a deleted tenant's revoked keys looked like any others'.
    owners = {k["tenant_id"] for k in keys["items"]}
    names = _tenant_names(api) if len(owners) > 1 else {}
    tenant = ("TENANT",) if names else ()
    _table(
        ("ID", "PREFIX", "NAME", *tenant, "ROLE", "CREATED", "REVOKED"),
        [
            (k["id"], k["prefix"], k["name"],
             *((names.get(k["tenant_id"], k["tenant_id"]),) if names else ()),
             k["role"], _time(k["created_at"]), _time(k["revoked_at"]) if k["revoked_at"] else "")
            for k in keys["items"]
        ],
    )  # fmt: skip
    return 0


def revoke_key(api: Api, args: argparse.Namespace) -> int:
    # By its prefix too: what `keys list` and the audit log show of a key. The list also
    # says whether it was revoked before, which the DELETE's answer (the same) does not.
    given = args.key
    if given.startswith("wsk_") and len(given) > KEY_PREFIX_LENGTH:  # a whole key: never repeated
        given = given[:KEY_PREFIX_LENGTH]
        _warn(f"Give the prefix, {given}: a whole key on a command line is seen by others")
    keys = api.call("GET", "/keys")["items"]
    found = [k for k in keys if _same_key(given, k)]
    if not found:
        raise ApiError(
            404, "Not found", f"no key has the id or prefix {given} (see woostore keys list)"
        )
    before = found[0]
    key = api.call("DELETE", f"/keys/{before['id']}")
    if args.json:
        _print_json(key)
    elif before["revoked_at"]:
        print(f"{key['prefix']} ({key['name']}) was revoked already, at {_time(key['revoked_at'])}")
    else:
        print(f"Revoked {key['prefix']} ({key['name']})")
    return 0


KEY_PREFIX_LENGTH = 16  # "wsk_" and 12 hex digits: what lists and the audit log show of a key


def _same_key(given: str, key: dict[str, Any]) -> bool:
    """Whether ``given`` names ``key``: its prefix, or its id however a UUID is written."""
    try:
        return uuid.UUID(given) == uuid.UUID(str(key["id"]))
    except ValueError:
        return bool(given == key["prefix"])


def create_tenant(api: Api, args: argparse.Namespace) -> int:
    tenant = api.call("POST", "/tenants", json={"name": args.name, "store_limit": args.store_limit})
    if args.json:
        _print_json(tenant)
    else:
        print(f"Tenant {tenant['name']} ({tenant['id']}): {_stores_of(tenant)}")  # as show
    return 0


def update_tenant(api: Api, args: argparse.Namespace) -> int:
    fields = ("name", "store_limit", "suspended")
    changes = {field: getattr(args, field) for field in fields if field in args}
    if not changes:
        _warn("Give --name, --store-limit, --suspend or --resume")
        return USAGE
    tenant = api.call("PATCH", f"/tenants/{_tenant(api, args.id)}", json=changes)
    live, cap = tenant["live_stores"], tenant["store_cap"]
    if "store_limit" in changes and live > cap:  # allowed: no store is taken away
        # Over the cap by one at the least, so two or more must go before it makes one.
        until = "while its limit is 0" if cap == 0 else f"until {live - cap + 1} are deleted"
        _warn(f"It keeps the {live} stores it has, and can make no more {until}")
    if args.json:
        _print_json(tenant)
        return 0
    print(f"Tenant {tenant['name']}: {_stores_of(tenant)}{_suspension(tenant)}")
    if "suspended" in changes:
        print(
            "Its keys are refused until it is resumed (its event streams end at once); "
            "its stores keep serving"
            if tenant["suspended_at"] else "Its keys are accepted"
        )  # fmt: skip
    return 0


def delete_tenant(api: Api, args: argparse.Namespace) -> int:
    tenant = api.call("DELETE", f"/tenants/{_tenant(api, args.id)}")
    if args.json:
        _print_json(tenant)
    else:
        print(
            f"Tenant {tenant['name']} deleted: its keys are revoked, its audit log is kept, "
            "and its name can be a new tenant's"
        )
    return 0


def show_tenant(api: Api, args: argparse.Namespace) -> int:
    tenant = api.call("GET", f"/tenants/{_tenant(api, args.id)}")
    if args.json:
        _print_json(tenant)
    else:
        print(
            f"Tenant {tenant['name']} ({tenant['id']}): {_stores_of(tenant)}{_suspension(tenant)}"
        )
    return 0


def list_tenants(api: Api, args: argparse.Namespace) -> int:
    tenants = api.call(
        "GET", "/tenants", params={"include_deleted": "true"} if args.deleted else {}
    )
    if args.json:
        _print_json(tenants)
        return 0
    deleted = ("DELETED",) if args.deleted else ()
    _table(
        ("ID", "NAME", "STORES", "CREATED", *deleted),
        [
            (t["id"], t["name"], _stores_of(t) + _suspension(t), _time(t["created_at"]),
             *((_time(t["deleted_at"]) if t["deleted_at"] else "",) if args.deleted else ()))
            for t in tenants
        ],
    )  # fmt: skip
    return 0


def _tenant_names(api: Api) -> dict[str, str]:
    """Every tenant's name by its id, deleted ones' too: what an admin's lists of several
    tenants' stores or keys name each one's tenant by."""
    tenants = api.call("GET", "/tenants", params={"include_deleted": "true"})
    # A deleted tenant's name may be a live one's now: told apart. A suspended one's keys
    # are refused: said where they are listed.
    return {t["id"]: t["name"] + _marked(t) for t in tenants}


def _marked(tenant: dict[str, Any]) -> str:
    if tenant["deleted_at"]:
        return " (deleted)"
    return " (suspended)" if tenant["suspended_at"] else ""


def _tenant(api: Api, given: str) -> str:
    """A tenant's id, given its id or its name ("default" is the admin token's): a name is
    what an operator remembers. An admin finds any live tenant by name; a tenant's key its
    own."""
    try:
        return str(uuid.UUID(given))
    except ValueError:
        pass
    me = api.call("GET", "/session")
    if me["tenant_name"] == given:
        return str(me["tenant_id"])
    if me["role"] != "admin":  # `tenants list` is an admin's: it would be refused
        own = me["tenant_name"]
        # As the API words it for another tenant's id: one refusal, however it is named.
        raise ApiError(403, "Forbidden", f"a tenant key reads only its own tenant's data ({own})")
    for tenant in api.call("GET", "/tenants"):
        if tenant["name"] == given:
            return str(tenant["id"])
    raise ApiError(404, "Not found", f"no tenant is named {given!r} (see woostore tenants list)")


def _suspended(api: Api, tenant_id: str) -> str | None:
    """For a suspended tenant, what to tell an admin making something for it, with ``{so}``
    to fill in: it works, but not for the tenant's keys until the tenant is resumed."""
    tenant = api.call("GET", f"/tenants/{tenant_id}")
    if not tenant["suspended_at"]:
        return None
    name = tenant["name"]
    return (f"Tenant {name} is suspended: {{so}} until an admin resumes it "
            f"(woostore tenants update {name} --resume).")  # fmt: skip


def _suspension(tenant: dict[str, Any]) -> str:
    """What a tenant's line adds while it is suspended (a deleted one is no more)."""
    since = tenant.get("suspended_at")
    return f", suspended since {_time(since)}" if since and not tenant["deleted_at"] else ""


def _stores_of(tenant: dict[str, Any]) -> str:
    """e.g. "3 of 5", "3 of 10 (the platform's default)": its live stores and its cap."""
    default = " (the platform's default)" if tenant["store_limit"] is None else ""
    return f"{tenant['live_stores']} of {tenant['store_cap']}{default}"


def audit(api: Api, args: argparse.Namespace) -> int:
    params = {
        **({"target": args.target} if args.target else {}),
        **({"tenant_id": _tenant(api, args.tenant)} if args.tenant else {}),
    }
    page = api.page_through("/audit", params, args.limit)
    if args.json:
        _print_json(page)
        return 0
    _table(
        ("TIME", "ACTOR", "ACTION", "TARGET", "DETAILS", "FROM"),
        [
            (_time(e["time"]), e["actor"], e["action"], e["target"], _details(e["details"]),
             e["source_ip"] or "")
            for e in page["items"]
        ],
    )  # fmt: skip
    _say_if_more(page, "entries", args.limit)
    return 0


def _details(details: dict[str, Any]) -> str:
    """An audit entry's details on one line, e.g. "suspended=true, store_limit=0": what tells
    one tenant.update (or key.create...) from another."""
    return ", ".join(
        f"{name}={value if isinstance(value, str) else json.dumps(value)}"
        for name, value in details.items()
    )


# ---- waiting with a progress bar -------------------------------------------------------


_AT_WORK = ("provisioning", "updating", "backing_up", "restoring", "deleting")  # at a step


def _step_line(step: dict[str, Any], cause: str | None) -> str:
    line = f"Step {step['index']} of {step['total']} — {step['title']}"
    return f"{line} — {cause}" if cause else line  # the cause: why it waits on the cluster


def _at_step(store: Store, goal: Goal) -> tuple[str, float] | None:
    """The step ``store`` is at, as the resource tells it, when it is one of ``goal``'s: a
    wait started midway shows where the store is, not "Queued" until the next step. (A
    deletion asked for while the store is busy has not started: its steps are not yet.)"""
    step = store.get("step")
    if (
        not step
        or store["status"] not in _AT_WORK
        or (goal is DELETE and store["status"] != "deleting")
    ):
        return None
    return _step_line(step, store.get("waiting_cause")), store["progress"]


def _look_up(api: Api, store: Store) -> Callable[[], Store]:
    def current() -> Store:
        found: Store = api.call("GET", f"/stores/{store['id']}")
        return found

    return current


def _settled(store: Store, goal: Goal) -> str | None:
    """How ``goal`` ended, read from the store resource (a backup's: from the backup
    resource) again (``None``: not yet)."""
    if goal is BACKUP:
        return {"complete": BACKUP.success, "failed": BACKUP.failure}.get(store["status"])
    if goal.phase in CHANGES or goal is RESTORE:
        change = store.get("last_change") or {}
        if change.get("kind") != goal.phase or change.get("result") is None:
            return None
        return goal.success if change["result"] == "changed" else goal.failure
    if store["status"] == goal.success or store["status"] == goal.failure:
        return str(store["status"])
    if goal.makes and store["status"] in ("deleting", "deleted"):  # cancelled: never ready
        return str(store["status"])
    return None


def _follow(
    stream: Iterable[Event | Gap],
    store: Store,
    goal: Goal,
    as_json: bool,
    look_up: Callable[[], Store],
) -> int:
    """Follow ``store`` on ``stream`` until ``goal`` succeeds or fails; the exit code. Should
    the stream lose events, the store is read again (``look_up``) to tell whether it ended."""
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    # Off a terminal (a CI job's log, a pipe) a bar is drawn once, as it ends: there, each
    # step it would show is a line of its own.
    in_lines = not as_json and not console.is_interactive  # rich's own test for a live bar
    bar = Progress(*columns, console=console, disable=as_json or in_lines)
    said = ""

    def show(description: str, completed: float) -> None:
        nonlocal said
        bar.update(task, description=description, completed=completed)
        if in_lines and description != said:
            console.print(f"{description} ({completed:.0%})", markup=False, soft_wrap=True)
            said = description

    if goal.makes and store.get("from_backup"):  # a copy of a backup: its own recipe
        goal = replace(goal, phase="clone")
    outcome: Event | None = None
    steps: dict[str, dict[str, Any]] = {}  # by name, as the progress events told them
    try:
        with bar:
            task = bar.add_task("", total=1)
            waiting = f"{goal.waiting}: it starts{_once(store)}" if _once(store) else goal.waiting
            midway = _at_step(store, goal)  # `woostore wait` on a store under way
            if midway:  # its step as the store tells it: no progress event of it comes
                steps[store["step"]["name"]] = store["step"]
            show(*(midway or (waiting + _queue(store), 0)))
            for event in stream:
                if isinstance(event, Gap):
                    settled = _settled(look_up(), goal)
                    if settled is not None:
                        _warn(f"Events were lost ({event.reason}); {store['name']} is now "
                              f"{settled}. See: woostore show {store['id']}")  # fmt: skip
                        return 0 if settled == goal.success else FAILED
                    continue
                if event.store_id != store["id"] or _older(event, store):
                    continue  # another store's, or a step the store as read is past
                if as_json:
                    _print_event_json(event)
                data = event.data
                if event.kind == "delete_queued":  # asked for elsewhere while this ran
                    store = {**store, "delete_requested_at": event.cloudevent["time"]}
                if event.kind == "backup_damaged":  # found by this work: told, as it goes on
                    _warn(f"Backup {data['backup_id']} of {store['name']} was found damaged: "
                          f"{data['reason']}")  # fmt: skip
                elif event.kind == "fell_back":  # the pool's store failed: made from scratch
                    _warn(f"The warm pool's store could not be used ({data.get('reason')}); "
                          "making one from scratch.")  # fmt: skip
                    goal = CREATE
                    show(goal.waiting, 0)
                elif event.kind == "progress" and data.get("phase") == goal.phase:
                    steps[data["step"]["name"]] = data["step"]
                    show(_step_line(data["step"], data.get("cause")), data["progress"])
                elif event.kind in (goal.success, goal.failure):
                    show(event.kind.replace("_", " ").capitalize(), 1)
                    outcome = event
                    break
                elif goal.makes and event.kind == "delete_requested":  # cancelled: never ready
                    show("Cancelled", 1)
                    outcome = event
                    break
    except KeyboardInterrupt:
        _warn(f"Stopped waiting; the store carries on. See: woostore show {store['id']}")
        return INTERRUPTED
    except (ApiError, Unreachable) as error:
        # The stream refused to go on (its key revoked, its tenant suspended) or stayed lost:
        # the wait is over, not the store's work, which a failure's exit code would say. A
        # refused key is refused `show` too: it is pointed to only where the stream was lost.
        if as_json and isinstance(error, StreamEnded):
            _print_stream_end(error)  # where a program reads the events, as `events` says it
        refused = isinstance(error, ApiError) and error.status in (401, 403)
        see = "" if refused else f" See: woostore show {store['id']}"
        _warn(f"Stopped waiting ({error}); {store['name']} carries on.{see}")
        return STOPPED_WAITING
    assert outcome is not None, "the stream only ends when interrupted"
    if store.get("delete_requested_at") and goal is not DELETE:  # asked for while it was busy
        # It starts as the work ends (the end's event offers nothing: the store is deleting),
        # unless a copy still reads the store's backups (its credentials are still offered).
        when = "once no copy reads its backups" if outcome.data.get("actions") else "now"
        _warn(f"{store['name']}'s deletion starts {when}. See: woostore wait {store['id']}")
    if outcome.kind == "delete_requested":
        _warn(f"{store['name']} was cancelled before it was ready: its deletion was asked for. "
              f"See: woostore wait {store['id']}")  # fmt: skip
        return FAILED
    if outcome.kind != goal.success:
        # The step as the progress lines showed it (the event names it only).
        failed_at = outcome.data.get("step")
        step = steps.get(failed_at) if failed_at else None
        at = f" at step {step['index']} of {step['total']} — {step['title']}" if step else ""
        at = at or (f" at step {failed_at}" if failed_at else "")
        what = "failed" if goal.makes else f"{goal.phase} failed"
        _warn(f"{store['name']} {what}{at}: {outcome.data.get('reason', 'no reason given')}")
        return FAILED
    if not as_json and goal is CHANGES["settings"]:
        print(f"{store['name']}{_tag(store)} has its new settings: "
              f"{_settings(outcome.data['settings'], products=False)}.")  # fmt: skip
    elif not as_json and goal.phase in CHANGES:
        version = outcome.data["chart_version"]
        print(f"{store['name']}{_tag(store)} runs chart {version} (revision "
              f"{outcome.data['revision']}).")  # fmt: skip
    elif not as_json and goal is RESTORE:
        print(f"{store['name']}{_tag(store)} is restored to backup "
              f"{outcome.data['backup_id']}.")  # fmt: skip
    elif not as_json and goal is BACKUP:
        print(f"Backup {outcome.data['backup_id']} of {store['name']}{_tag(store)} is complete: "
              f"{_size(outcome.data['size'])}.")  # fmt: skip
    elif not as_json and goal.makes:
        # An API older than requested_at (0022) sends created_at alone.
        asked = store.get("requested_at") or store["created_at"]
        took = _seconds_between(asked, outcome.cloudevent["time"])
        source = " from the warm pool" if goal is CLAIM else ""
        print(f"{store['name']}{_tag(store)} is ready in {took:.1f} s{source}.")
        print(f"  storefront  {outcome.data['storefront_url']}")
        print(f"  admin       {outcome.data['admin_url']}")
        print(f"  login       woostore credentials {store['id']}")
    elif not as_json:
        print(f"{store['name']}{_tag(store)} is {goal.success}.")
    return 0


# ---- output --------------------------------------------------------------------------------


def _table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column in ("ID", "CREATED", "TIME", "DELETED", "REVOKED"))
    for row in rows:
        table.add_row(*map(Text, row))  # Text: names are shown as typed, never as markup
    _stdout().print(table)


def _tag(store: Store) -> str:
    return " (simulated)" if store.get("simulated") else ""


def _queue(store: Store) -> str:
    position = store.get("queue_position")
    return f" (position {position} in the queue)" if position else ""


def _settings(settings: dict[str, Any] | None, products: bool = True) -> str:
    """E.g. "EUR, DE, de_DE, no sample products"; without ``products``, what a settings
    change sets ("EUR, DE, de_DE"): how a store started is not one of them."""
    if not settings:
        return ""
    place = settings["country"] + (f"-{settings['state']}" if settings.get("state") else "")
    said = [settings["currency"], place, settings["language"]]
    if products:
        said.append("sample products" if settings["sample_products"] else "no sample products")
    return ", ".join(said)


def _last_change(change: dict[str, Any] | None) -> str:
    """The store's latest change and how it ended, e.g. "rollback failed: why"."""
    if not change:
        return ""
    line = f"{change['kind']} {change['result'] or 'under way'}"
    return f"{line}: {change['reason']}" if change.get("reason") else line


def _status(store: Store) -> str:
    return " — ".join(filter(None, [store["status"], _detail(store)]))


def _detail(store: Store) -> str:
    """The one thing worth knowing about a store in its current status."""
    status, step = store["status"], store.get("step")
    if status in ("provisioning", "updating", "backing_up", "restoring", "deleting") and step:
        return f"step {step['index']} of {step['total']}: {step['title']}"
    if status == "queued":
        return _queue(store).strip(" ()")
    if status == "ready":
        return str(store.get("storefront_url") or "")
    if status == "failed":
        return str(store.get("failure_reason") or "")
    return ""


def _event_line(time: str, kind: str, store_id: str | None, data: dict[str, Any]) -> str:
    status = data.get("status", "")
    what = status
    if kind == "progress":
        step = data["step"]
        # The title the progress bar and `show` print, not the step's name in the recipe.
        what = f"{status} step {step['index']}/{step['total']} {data['state']}: {step['title']}"
        if data.get("cause"):  # why it waits on the cluster, as the progress line says it
            what += f" — {data['cause']}"
    elif kind == "requested":
        what = f'{status} "{data["store"]["name"]}"'
    elif kind == "ready":
        what = f"{status} {data.get('storefront_url', '')}"
    else:  # a change, a backup, a restore, a failure: what it was of, and why it ended so
        what = " ".join([status, *_what_of(data)])
        if data.get("reason"):
            what += f": {data['reason']}"
    return "  ".join(part for part in (_time(time), f"{kind:<17}", store_id, what) if part)


def _what_of(data: dict[str, Any]) -> list[str]:
    """What an event was of, e.g. ["backup 3f2a…", "scheduled"] or ["upgrade", "chart 0.3.0"]."""
    said = [str(data["change"])] if data.get("change") else []
    if data.get("change") == "settings" and data.get("settings"):  # not the chart it left
        return [*said, _settings(data["settings"], products=False)]
    if data.get("backup_id"):
        said.append(f"backup {data['backup_id']}")
    if data.get("trigger"):
        said.append(str(data["trigger"]))
    if "size" in data:
        said.append(_size(int(data["size"])))
    if data.get("revision"):
        said.append(f"chart {data.get('chart_version')} (revision {data['revision']})")
    return said


def _size(size: int) -> str:
    """Bytes for people: "48.2 MB"."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _versions(backup: dict[str, Any]) -> str:
    """What the backed-up store ran, e.g. "chart 0.2.0, WordPress 7.1.2, WooCommerce 11.2.0"."""
    named = (("chart", "chart_version"), ("WordPress", "wordpress_version"),
             ("WooCommerce", "woocommerce_version"))  # fmt: skip
    return ", ".join(f"{label} {backup[key]}" for label, key in named if backup.get(key))


def _older(event: Event, store: Store) -> bool:
    """Whether ``event`` is a step older than ``store`` as it was read: the stream is
    connected first, then the store read, so the steps that came between are in it already
    (shown, a step went back a moment; a user's review). Progress only: an end, stamped by
    another host than the store as read, is never dropped for their clocks' difference."""
    read = store.get("updated_at")
    if event.kind != "progress" or not isinstance(read, str):
        return False
    return datetime.fromisoformat(event.cloudevent["time"]) < datetime.fromisoformat(read)


def _time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _origin(store: Store) -> str:
    """Where the store came from, and how long its owner waited for it."""
    copied = f"a copy of backup {store.get('from_backup')}"
    if of := store.get("from_store"):  # an API older than from_store does not say
        copied += f" of {of['name']} ({of['id']})"
    source = {"pool": "the warm pool", "backup": copied}.get(
        store.get("origin", ""), "made from scratch"
    )
    took = store.get("ready_in_seconds")
    return source if took is None else f"{source}, ready in {took:.1f} s"


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _print_event_json(event: Event) -> None:
    line = {"sequence": event.sequence, "event": event.cloudevent}
    print(json.dumps(line, ensure_ascii=False), flush=True)


def _stdout() -> Console:
    # Piped output is not cut to 80 columns: ids and URLs must stay whole.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 1000)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- command line --------------------------------------------------------------------------


def _sequence(text: str) -> int | None:
    """A stream sequence, or None for ``now``: only events from now on."""
    if text == "now":
        return None
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError("a stream sequence (0 or more), or now")
    return int(text)


def _id_of(what: str, listed_by: str) -> Callable[[str], str]:
    """An argument's type: a store's or a backup's id, checked before asking (a mistyped one
    was answered with the API's validator's words about path parameters)."""

    def checked(text: str) -> str:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a {what}'s id (a UUID): {text!r}; {listed_by} shows them"
            ) from None

    return checked


_store_id = _id_of("store", "woostore list")
_backup_id = _id_of("backup", "woostore backups list STORE_ID")


def _store_limit(text: str) -> int | None:
    if text == "default":
        return None
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError('a number of stores, or "default"')
    return int(text)


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError("a number of 1 or more")
    return int(text)


def _token(text: str) -> str:
    """The token as given, without the space or newline a copy or an env file adds around it.
    One with any other character no HTTP header carries is refused without being shown: the
    HTTP client's own error printed it whole, as if the server could not be reached."""
    token = text.strip()
    if token[:7].lower() == "bearer ":
        raise argparse.ArgumentTypeError("give the token alone: 'Bearer ' is added to it")
    if not all(" " <= character <= "~" for character in token):
        raise argparse.ArgumentTypeError(
            "the token (--token or WOOSTORE_TOKEN) has a character no token has: a control "
            "character or a non-ASCII one; check that it was copied whole, and alone"
        )
    return token


def _connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--url, --token and --json, accepted before and after the command: only the main
    parser has defaults, so a subcommand never overwrites what was given before it."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    env_url = os.environ.get("WOOSTORE_URL") or DEFAULT_URL
    parser.add_argument(
        "--url", default=default(env_url), help=f"API URL (WOOSTORE_URL, default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--token",
        default=default(os.environ.get("WOOSTORE_TOKEN")),
        type=_token,  # applied to the environment's too (argparse converts a string default)
        help="bearer token (WOOSTORE_TOKEN)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="woostore",
        description="Create, follow, inspect and delete WooStore stores.",
        epilog="Exit codes: 0 done, 1 refused by the API, or what was waited for failed or "
        "was cancelled (the store deleted first), 2 unreachable, or unable to answer for now "
        "(503), or a usage error, 3 stopped waiting before the outcome (the event stream "
        "refused to go on or stayed lost: the store carries on), 130 interrupted.",
    )
    _connection_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, defaults=False)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(
        name: str,
        run: Callable[[Api, argparse.Namespace], int],
        help: str,
        under: Any = commands,
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = under.add_parser(
            name, parents=[common], help=help, description=help
        )
        sub.set_defaults(run=run)
        return sub

    def group(name: str, help: str) -> Any:
        parent = commands.add_parser(name, help=help, description=help)
        return parent.add_subparsers(title="commands", required=True, metavar="COMMAND")

    wait_help = "follow the event stream with a progress bar until it is done"
    sub = command("create", create, "create a store")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--wait", action="store_true", help=wait_help)
    for name, about in SETTING_OPTIONS.items():
        sub.add_argument("--" + name.replace("_", "-"), dest=name, help=about)
    sub.add_argument(
        "--sample-products",
        action=argparse.BooleanOptionalAction,
        help="start with three sample products (the platform's default: on)",
    )
    sub.add_argument(
        "--tenant", metavar="TENANT", help="admins: the tenant it is made for (id or name)"
    )
    sub.add_argument(
        "--from-backup",
        metavar="BACKUP_ID",
        type=_backup_id,
        help="a copy of one of the tenant's stores, from its backup (with its settings)",
    )
    sub.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="the same KEY again (with the same name and options) answers with the store it"
        " made, rather than making another: safe to run again after a timeout (default: a"
        " new key each time, named if the API cannot be reached)",
    )
    sub = command("list", list_stores, "list stores, newest first (deleted ones with --all)")
    sub.add_argument(
        "--status",
        action="append",
        # Checked here, in any case: a usage error, not the API's 422 a request later.
        type=str.lower,
        choices=STATUSES,
        metavar="STATUS",
        help=f"only stores in this status; repeat it for several: {', '.join(STATUSES)}",
    )
    sub.add_argument("--all", action="store_true", help="deleted stores too")
    sub.add_argument("--name", help="only stores whose name holds this, in any case")
    sub.add_argument("--tenant", metavar="TENANT", help="admins: one tenant's stores (id or name)")
    sub.add_argument("--limit", type=_positive, default=100, help="at most this many (default 100)")
    sub = command("show", show, "show a store and its event history")
    sub.add_argument("id", metavar="ID", type=_store_id)
    sub = command(
        "wait", wait, "follow a store until what it does now ends (made, changed, deleted...)"
    )
    sub.add_argument("id", metavar="ID", type=_store_id)
    sub = command("delete", delete, "delete a store and everything it owns")
    sub.add_argument("id", metavar="ID", type=_store_id)
    sub.add_argument("--wait", action="store_true", help=wait_help)
    for name, help in (
        (
            "upgrade",
            "upgrade the store's release to the platform's current chart"
            " (a store already on it gets a new revision of the same chart)",
        ),
        ("rollback", "roll the store's release back to its previous revision"),
    ):
        sub = command(name, change, help)
        sub.set_defaults(change=name)
        sub.add_argument("id", metavar="ID", type=_store_id)
        sub.add_argument("--wait", action="store_true", help=wait_help)
    sub = command(
        "settings", change_settings,
        "give a ready store other settings (backed up first); those left out stay as they are",
    )  # fmt: skip
    sub.add_argument("id", metavar="ID", type=_store_id)
    for name, about in SETTING_OPTIONS.items():
        sub.add_argument("--" + name.replace("_", "-"), dest=name, help=about)
    sub.add_argument("--wait", action="store_true", help=wait_help)
    sub = command("retry", retry, "make a failed store again, once its clean-up has finished")
    sub.add_argument("id", metavar="ID", type=_store_id)
    sub.add_argument("--wait", action="store_true", help=wait_help)
    sub = command("credentials", credentials, "the store's WordPress admin login")
    sub.add_argument("id", metavar="ID", type=_store_id)
    sub = command(
        "events",
        events,
        "print store events (--json: {sequence, event} per line, {sequence, gap} for lost ones)",
    )
    sub.add_argument(
        "--since", type=_sequence, default=0,
        help="after this sequence (default 0: every event kept); now: only new ones",
    )  # fmt: skip
    sub.add_argument("--follow", action="store_true", help="keep printing until Ctrl-C")
    sub.add_argument("--store", metavar="ID", type=_store_id, help="this store's events alone")
    sub.add_argument("--tenant", metavar="TENANT", help="admins: one tenant's events (id or name)")
    sub.set_defaults(misused=sub.error)  # its usage, not every command's, for what only it takes
    command("whoami", whoami, "the key in use: its prefix, role and tenant")

    keys = group("keys", "make, list and revoke API keys")
    sub = command("create", create_key, "make a key; its token is printed once", keys)
    sub.add_argument("name", metavar="NAME", help="what the key is for")
    sub.add_argument(
        "--role", choices=("tenant", "admin"), default="tenant",
        help="tenant (default): its tenant's stores and keys; admin: every tenant's, whatever "
        "tenant it belongs to",
    )  # fmt: skip
    sub.add_argument("--tenant", metavar="TENANT", help="admins: the key's tenant (id or name)")
    sub = command("list", list_keys, "list keys (never their tokens)", keys)
    sub.add_argument("--tenant", metavar="TENANT", help="admins: one tenant's keys (id or name)")
    sub = command("revoke", revoke_key, "revoke a key at once", keys)
    sub.add_argument("key", metavar="ID_OR_PREFIX", help="as keys list shows it")

    backups = group("backups", "back a store up, list its backups, delete one")
    sub = command("create", create_backup, "back a ready store up: database and uploads", backups)
    sub.add_argument("id", metavar="STORE_ID", type=_store_id)
    sub.add_argument("--wait", action="store_true", help=wait_help)
    sub = command("list", list_backups, "list a store's backups, newest first", backups)
    sub.add_argument("id", metavar="STORE_ID", type=_store_id)
    sub = command("delete", delete_backup, "delete one of a store's backups", backups)
    sub.add_argument("id", metavar="STORE_ID", type=_store_id)
    sub.add_argument("backup", metavar="BACKUP_ID", type=_backup_id)
    sub = command(
        "restore", restore, "return a ready store to one of its backups (backed up first)"
    )
    sub.add_argument("id", metavar="STORE_ID", type=_store_id)
    sub.add_argument("backup", metavar="BACKUP_ID", type=_backup_id)
    sub.add_argument("--wait", action="store_true", help=wait_help)

    tenants = group(
        "tenants", "make, change and list tenants (admins; a tenant key: tenants show, its own)"
    )
    sub = command("create", create_tenant, "make a tenant", tenants)
    sub.add_argument("name", metavar="NAME", help="lower case letters, digits and hyphens")
    sub.add_argument(
        "--store-limit", type=_store_limit, metavar="N",
        help="the most live stores it may have, or `default`: the platform's (when left out)",
    )  # fmt: skip
    sub = command(
        "update", update_tenant,
        "rename a tenant, change its store limit, suspend or resume it", tenants,
    )  # fmt: skip
    sub.add_argument("id", metavar="TENANT", help="its id or name")
    # Left out, a field is not sent, and stays as it is.
    sub.add_argument("--name", default=argparse.SUPPRESS, help="its new name")
    sub.add_argument(
        "--store-limit", type=_store_limit, default=argparse.SUPPRESS, metavar="N",
        help="the most live stores it may have, or `default`: the platform's",
    )  # fmt: skip
    pause = sub.add_mutually_exclusive_group()
    pause.add_argument(
        "--suspend", dest="suspended", action="store_true", default=argparse.SUPPRESS,
        help="refuse its keys until it is resumed; its stores keep serving",
    )  # fmt: skip
    pause.add_argument(
        "--resume", dest="suspended", action="store_false", default=argparse.SUPPRESS,
        help="accept its keys again",
    )  # fmt: skip
    sub = command("list", list_tenants, "list tenants: their live stores, and their cap", tenants)
    sub.add_argument(
        "--deleted", action="store_true", help="deleted tenants too, with when they were deleted"
    )
    sub = command("show", show_tenant, "a tenant's live stores, and its cap", tenants)
    sub.add_argument("id", metavar="TENANT", help="its id or name; a tenant's key: its own")
    sub = command(
        "delete", delete_tenant, "delete a tenant once its stores are deleted; revokes its keys",
        tenants,
    )  # fmt: skip
    sub.add_argument("id", metavar="TENANT", help="its id or name")

    sub = command("audit", audit, "who did what, newest first")
    sub.add_argument("--target", help='one object, e.g. "store/ID"')
    sub.add_argument("--tenant", metavar="TENANT", help="admins: one tenant's entries (id or name)")
    sub.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.run is events and args.since is None and not args.follow:
        args.misused("--since now shows new events only: add --follow to wait for them")
    try:
        with Api(args.url, args.token) as api:
            code: int = args.run(api, args)
            return code
    except ApiError as error:
        # A 503 is the API unable to answer for now (its database away), as a script tells
        # no answer at all: not a refusal, nor a store that failed.
        code = UNREACHABLE if error.status == 503 else FAILED
        if args.json:  # a script reads the problem as sent, or as the CLI's own words
            # ... and Retry-After, a header, as a member of it.
            problem = error.problem or {
                "title": error.title, "status": error.status, "detail": error.detail
            }  # fmt: skip
            later = {"retry_after": int(error.retry_after)} if error.retry_after else {}
            _warn(json.dumps({**problem, **later}, ensure_ascii=False))
            return code
        no_token = error.status == 401 and not args.token
        hint = " (set WOOSTORE_TOKEN or pass --token)" if no_token else ""
        if error.retry_after:
            hint += f" (ask again in {error.retry_after} s)"
        _warn(f"{error}{hint}")
        return code
    except Unreachable as error:
        _warn(f"woostore: {error}")
        return UNREACHABLE
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # the reader went away (`woostore events | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
