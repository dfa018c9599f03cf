"""Migrations that move data: a database written by an older version reads right after
upgrading (real PostgreSQL, migrated step by step as ``woostore-setup`` would)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import woostore_shared.models  # noqa: F401  (the tables, registered on SQLModel.metadata)
from woostore_devstack.embedded import Postgres
from woostore_shared.migrating import alembic_config
from woostore_shared.settings import Settings

TENANT = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
def empty_database(postgres: Postgres) -> Iterator[str]:
    """A database with no schema yet; its plain URL."""
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield postgres.url_for(name)
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_the_migrated_schema_is_the_one_the_models_declare(empty_database: str) -> None:
    """The models are what the services expect; the migrations make what a database has.
    An index or a type declared in one alone drifted unseen (0007's index, 0009's text column)."""
    url = Settings(database_url=empty_database).database_url
    command.upgrade(alembic_config(url), "head")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    finally:
        engine.dispose()

    assert drift == []


def add_store(connection: psycopg.Connection, status: str, reason: str | None = None) -> str:
    store_id = str(uuid.uuid4())
    connection.execute(
        "INSERT INTO stores (id, tenant_id, name, slug, type, status, simulated, progress,"
        " failure_reason, correlation_id, replays, created_at, updated_at)"
        " VALUES (%s, %s, 'Shop', %s, 'woocommerce', %s, true, 0, %s, 'c', 0, now(), now())",
        (store_id, TENANT, f"shop-{store_id[:8]}", status, reason),
    )
    return store_id


def add_store_since_0011(
    connection: psycopg.Connection,
    n: int,
    tenant: str | None,
    status: str,
    age: timedelta = timedelta(0),
    changed: timedelta = timedelta(0),
) -> None:
    """Store number ``n``, made ``age`` ago and last changed ``changed`` ago, with the
    columns a store has had since the warm pool (0011)."""
    connection.execute(
        "INSERT INTO stores (id, tenant_id, name, slug, namespace, origin, type, status,"
        " simulated, settings, progress, correlation_id, replays, created_at, updated_at)"
        " VALUES (gen_random_uuid(), %s, 'Shop', %s, %s, 'cold', 'woocommerce', %s, true,"
        " '{}', 1, 'c', 0, now() - %s, now() - %s)",
        (tenant, f"shop-{n}", f"store-shop-{n}", status, age, changed),
    )


def test_failed_stores_count_as_cleaned_up_and_a_failed_change_becomes_the_changes_outcome(
    empty_database: str,
) -> None:
    """Before 0008 a failed store was cleaned up as it failed, and a ready store kept the
    reason its last change failed in failure_reason."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0007")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        failed = add_store(connection, "failed", "its rollout never came up")
        changed_badly = add_store(connection, "ready", "wait_for_rollout failed")
        ready = add_store(connection, "ready")
        connection.execute(
            "INSERT INTO store_events (id, store_id, subject, type, time, envelope)"
            " VALUES (%s, %s, 'store.change_failed.x', 'io.woostore.store.change_failed',"
            " now(), %s)",
            (str(uuid.uuid4()), changed_badly, json.dumps({"data": {"change": "rollback"}})),
        )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT id::text, failure_reason, cleaned_up_at IS NOT NULL FROM stores"
        ).fetchall()
        changes = connection.execute(
            "SELECT store_id::text, kind, result, reason FROM store_changes"
        ).fetchall()
    assert {row[0]: row[1:] for row in rows} == {
        failed: ("its rollout never came up", True),  # a failed store keeps why
        changed_badly: (None, False),
        ready: (None, False),
    }
    assert changes == [(changed_badly, "rollback", "failed", "wait_for_rollout failed")]

    command.downgrade(config, "0007")  # and back, for an operator who must


def test_every_store_keeps_its_namespace_and_is_cold_after_the_warm_pool_arrives(
    empty_database: str,
) -> None:
    """Before 0011 a store's namespace was "store-<slug>", and every store was made cold."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0010")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        connection.execute("ALTER TABLE stores ALTER COLUMN settings SET DEFAULT '{}'")
        ready = add_store(connection, "ready")
        failed = add_store(connection, "failed", "its rollout never came up")
        connection.execute("ALTER TABLE stores ALTER COLUMN settings DROP DEFAULT")

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT id::text, namespace, 'store-' || slug, origin, claimed_at FROM stores"
        ).fetchall()
        # A store for the pool (no tenant) is allowed now; then the way back forgets it.
        connection.execute(
            "INSERT INTO stores (id, tenant_id, name, slug, namespace, origin, type, status,"
            " simulated, settings, progress, correlation_id, replays, created_at, updated_at)"
            " VALUES (gen_random_uuid(), NULL, 'Pool', 'pool-1', 'store-pool-1', 'pool',"
            " 'woocommerce', 'pooled', true, '{}', 1, 'c', 0, now(), now())"
        )
    assert {row[0] for row in rows} == {ready, failed}
    assert all(row[1] == row[2] and row[3:] == ("cold", None) for row in rows)

    command.downgrade(config, "0010")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        left = connection.execute("SELECT id::text FROM stores").fetchall()
    assert {row[0] for row in left} == {ready, failed}


def test_steps_journalled_before_they_were_measured_keep_no_time(empty_database: str) -> None:
    """Before 0012 the journal had no step times: those steps are left out of every estimate
    rather than counted as taking no time."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0011")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        ready = str(uuid.uuid4())
        connection.execute(
            "INSERT INTO stores (id, tenant_id, name, slug, namespace, origin, type, status,"
            " simulated, settings, progress, correlation_id, replays, created_at, updated_at)"
            " VALUES (%s, %s, 'Shop', 'shop-1', 'store-shop-1', 'cold', 'woocommerce', 'ready',"
            " true, '{}', 1, 'c', 0, now(), now())",
            (ready, TENANT),
        )
        connection.execute(
            "INSERT INTO store_steps (store_id, phase, name, completed_at)"
            " VALUES (%s, 'provision', 'namespace', now())",
            (ready,),
        )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        steps = connection.execute(
            "SELECT store_id::text, name, position, seconds FROM store_steps"
        ).fetchall()
    assert steps == [(ready, "namespace", None, None)]

    command.downgrade(config, "0011")


def test_the_stores_made_before_the_counts_are_counted(empty_database: str) -> None:
    """0018 counts what exists: live stores per tenant, the platform's live ones (pooled
    included) and its queue of owners' cold stores; failed and deleted ones not at all."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0017")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        for n, (tenant, status) in enumerate(
            [(TENANT, "queued"), (TENANT, "ready"), (TENANT, "failed"), (TENANT, "deleted"),
             (None, "pooled")]
        ):  # fmt: skip
            add_store_since_0011(connection, n, tenant, status)

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        counts = connection.execute("SELECT live, queued FROM store_counts").fetchall()
        owned = connection.execute(
            "SELECT live_stores FROM tenants WHERE id = %s", (TENANT,)
        ).fetchall()
    assert counts == [(3, 1)]
    assert owned == [(2,)]

    command.downgrade(config, "0017")


def test_stores_made_before_queued_at_entered_the_queue_at_their_last_change(
    empty_database: str,
) -> None:
    """0020: a store queued at the upgrade (made 2 hours ago, retried 1 hour ago) entered
    the queue at its last change; any other, when it was made. A store inserted without the
    column, as a replica not yet upgraded inserts, entered it then."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0019")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        for n, status in enumerate(["queued", "ready"]):
            add_store_since_0011(
                connection, n, TENANT, status, timedelta(hours=2), timedelta(hours=1)
            )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        add_store_since_0011(connection, 2, TENANT, "queued")
        rows = connection.execute(
            "SELECT slug, CASE queued_at WHEN created_at THEN 'made' WHEN updated_at"
            " THEN 'changed' END FROM stores ORDER BY slug"
        ).fetchall()
    assert rows == [("shop-0", "changed"), ("shop-1", "made"), ("shop-2", "made")]

    command.downgrade(config, "0019")


def test_the_steps_of_stores_copied_from_backups_move_to_their_own_phase(
    empty_database: str,
) -> None:
    """0021: a copy's steps, journalled as "provision", become "clone"; a cold store's stay."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0020")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        for n in range(2):
            add_store_since_0011(connection, n, TENANT, "ready")
        connection.execute(
            "UPDATE stores SET from_backup_id = gen_random_uuid(), origin = 'backup'"
            " WHERE slug = 'shop-1'"
        )
        connection.execute(
            "INSERT INTO store_steps (store_id, phase, name, completed_at, position, seconds)"
            " SELECT id, 'provision', 'verify', now(), 10, 1.5 FROM stores"
        )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        steps = connection.execute(
            "SELECT slug, phase, store_steps.name FROM store_steps"
            " JOIN stores ON stores.id = store_id ORDER BY slug"
        ).fetchall()
    assert steps == [("shop-0", "provision", "verify"), ("shop-1", "clone", "verify")]

    command.downgrade(config, "0020")


def test_stores_made_before_requested_at_count_from_their_latest_request(
    empty_database: str,
) -> None:
    """0022: a store retried an hour after its making counts from its retry (its latest
    `requested` event); one whose events are gone, from its making."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0021")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        for n in range(2):
            add_store_since_0011(connection, n, TENANT, "queued", timedelta(hours=2))
        for offset in (timedelta(hours=2), timedelta(hours=1)):  # made, then retried
            connection.execute(
                "INSERT INTO store_events (id, store_id, subject, type, time, envelope)"
                " SELECT gen_random_uuid(), id, 'store.requested.' || id,"
                " 'io.woostore.store.requested', now() - %s, '{}' FROM stores"
                " WHERE slug = 'shop-0'",
                (offset,),
            )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT slug, round(extract(epoch FROM now() - requested_at) / 3600)"
            " FROM stores ORDER BY slug"
        ).fetchall()
    assert rows == [("shop-0", 1), ("shop-1", 2)]

    command.downgrade(config, "0021")


def test_stores_made_with_lower_case_codes_get_them_in_upper_case(empty_database: str) -> None:
    """0023: "eur" and "in"/"ka" as an owner typed them become what WooCommerce takes; a
    store without a state, or with codes already right, keeps its settings as they were."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0022")
    typed = {"currency": "eur", "country": "in", "state": "ka", "language": "de_DE"}
    right = {"currency": "USD", "country": "US", "state": None, "language": "en_US"}
    with psycopg.connect(empty_database, autocommit=True) as connection:
        for n, settings in enumerate((typed, right)):
            add_store_since_0011(connection, n, TENANT, "ready")
            connection.execute(
                "UPDATE stores SET settings = %s WHERE slug = %s",
                (json.dumps(settings), f"shop-{n}"),
            )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        rows = connection.execute("SELECT settings FROM stores ORDER BY slug").fetchall()
    assert [row[0] for row in rows] == [
        {"currency": "EUR", "country": "IN", "state": "KA", "language": "de_DE"},
        right,
    ]

    command.downgrade(config, "0022")


def test_stores_deleted_before_delete_requested_at_take_the_time_they_were_asked(
    empty_database: str,
) -> None:
    """0024: a store deleted (or deleting) before takes the time of its delete_requested
    event, or of its latest change once its events are pruned; other stores none."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0023")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        add_store_since_0011(connection, 0, TENANT, "deleted", changed=timedelta(minutes=1))
        add_store_since_0011(connection, 1, TENANT, "deleting", changed=timedelta(hours=2))
        add_store_since_0011(connection, 2, TENANT, "backing_up")
        connection.execute(
            "INSERT INTO store_events (id, store_id, subject, type, time, envelope)"
            " SELECT gen_random_uuid(), id, 'store.delete_requested.' || id,"
            " 'io.woostore.store.delete_requested', now() - interval '3 hours', '{}'"
            " FROM stores WHERE slug = 'shop-0'"
        )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT slug, round(extract(epoch FROM now() - delete_requested_at) / 3600)"
            " FROM stores ORDER BY slug"
        ).fetchall()
    assert rows == [("shop-0", 3), ("shop-1", 2), ("shop-2", None)]


def test_tenants_deleted_give_their_names_back_and_keep_them_apart_when_downgraded(
    empty_database: str,
) -> None:
    """0026: a deleted tenant's name is a new tenant's to take; downgraded, where names are
    unique again, the deleted one's takes its id."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "head")
    gone = str(uuid.uuid4())
    with psycopg.connect(empty_database, autocommit=True) as connection:
        insert = (
            "INSERT INTO tenants (id, name, created_at, deleted_at) VALUES (%s, 'acme', now(), %s)"
        )
        connection.execute(insert, (gone, None))
        with pytest.raises(psycopg.errors.UniqueViolation):
            connection.execute(insert, (str(uuid.uuid4()), None))
        connection.execute("UPDATE tenants SET deleted_at = now() WHERE id = %s", (gone,))
        connection.execute(insert, (str(uuid.uuid4()), None))

    command.downgrade(config, "0025")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        names = connection.execute(
            "SELECT name FROM tenants WHERE name LIKE 'acme%' ORDER BY name"
        ).fetchall()
    assert names == [("acme",), (f"acme (deleted {gone})",)]


def test_stores_count_the_complete_backups_they_had(empty_database: str) -> None:
    """0029: a store counts its complete backups, neither its failed nor its deleted ones;
    a store never backed up counts none, nor a deleted one (its backups' rows were not all
    marked deleted before)."""
    config = alembic_config(Settings(database_url=empty_database).database_url)
    command.upgrade(config, "0028")
    with psycopg.connect(empty_database, autocommit=True) as connection:
        for n, status in enumerate(("ready", "ready", "deleted")):
            add_store_since_0011(connection, n, TENANT, status)
        kinds = ("complete", "complete", "failed", "deleting", "deleted", "running")
        for slug, status in [("shop-0", kind) for kind in kinds] + [("shop-2", "complete")]:
            connection.execute(
                "INSERT INTO store_backups (id, store_id, trigger, status, requested_at)"
                " SELECT gen_random_uuid(), id, 'requested', %s, now() FROM stores"
                " WHERE slug = %s",
                (status, slug),
            )

    command.upgrade(config, "head")

    with psycopg.connect(empty_database, autocommit=True) as connection:
        rows = connection.execute("SELECT slug, complete_backups FROM stores ORDER BY slug")
        assert rows.fetchall() == [("shop-0", 2), ("shop-1", 0), ("shop-2", 0)]
    command.downgrade(config, "0028")
