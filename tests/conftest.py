"""Fixtures: real PostgreSQL and NATS servers, started fresh on free ports/sockets."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from nats.aio.client import Client
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import ADMIN_TOKEN, SECRET_KEY
from woostore_devstack.embedded import NatsServer, Postgres, start_nats, start_postgres
from woostore_shared.db import Database
from woostore_shared.messaging import connect
from woostore_shared.migrating import migrate
from woostore_shared.secrets import sha256_hex
from woostore_shared.settings import Settings
from woostore_shared.topology import declare, ensure_topology
from woostore_shared.tracing import configure_tracing

TEMPLATE_DB = "woostore_template"

# Each pytest run re-tightens its temp root (/tmp/pytest-of-<user>) to 0700 at start, which
# locks the embedded PostgreSQL of any other run from the same temp root out of its data
# (it runs as its own system user). A temp root per checkout lets two checkouts' suites run
# side by side; pytest reads this variable when it first makes a temp folder.
os.environ.setdefault(
    "PYTEST_DEBUG_TEMPROOT",
    str(Path(tempfile.gettempdir()) / f"woostore-tests-{sha256_hex(str(Path.cwd()))[:8]}"),
)
Path(os.environ["PYTEST_DEBUG_TEMPROOT"]).mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = start_postgres(tmp_path_factory.mktemp("pg") / "data")
    with psycopg.connect(server.url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    migrate(Settings(database_url=server.url_for(TEMPLATE_DB)).database_url)
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres: Postgres) -> Iterator[str]:
    """A freshly migrated database per test, cloned from the session's template."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield postgres.url_for(name)
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = start_nats(tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture
def settings(database_url: str, nats_server: NatsServer, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        nats_url=nats_server.url,
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
        sim_time_scale=0,
        # Tests make stores in bursts; the tests of the limits set their own.
        creates_per_minute=1000,
        tenant_creates_per_minute=1000,
        tenant_changes_per_minute=1000,
    )


@pytest.fixture
async def nats_client(settings: Settings) -> AsyncIterator[Client]:
    client = await connect(settings.nats_url, "tests")
    await ensure_topology(client.jetstream(), declare(settings))
    yield client
    await client.close()


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.database_url)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Every span this test process finishes, kept in memory (the process's tracer provider,
    as a service makes it, with one more processor)."""
    provider = configure_tracing("tests")
    assert provider is not None, "OTEL_SDK_DISABLED is set: tracing cannot be tested"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test."""
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()
