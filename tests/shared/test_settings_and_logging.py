"""Settings read from the environment, and the log redaction of secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from faststream import FastStream
from faststream.nats import JStream, NatsBroker, PullSub
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support import served
from woostore_devstack.embedded import NatsServer
from woostore_devstack.launcher import load_or_create_secrets
from woostore_shared.logging import (
    _redact_secrets,
    broker_logger,
    configure_logging,
    get_logger,
    name_each_message,
)
from woostore_shared.settings import MIN_SECRET_BYTES, ClusterMode, LogFormat, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WOOSTORE_ variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("WOOSTORE_"):
            monkeypatch.delenv(name)


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/woo", "postgresql+psycopg://u:p@db:5432/woo"),
        ("postgres://u:p@db/woo", "postgresql+psycopg://u:p@db/woo"),
        ("postgresql+psycopg://u:p@db/woo", "postgresql+psycopg://u:p@db/woo"),
        (
            "postgresql://u@/woo?host=/tmp/pg%20dir",
            "postgresql+psycopg://u@/woo?host=/tmp/pg%20dir",
        ),
        ("", ""),
    ],
)
def test_a_plain_postgresql_url_is_used_through_psycopg3(given: str, used: str) -> None:
    assert Settings(database_url=given).database_url == used


def test_the_database_url_from_the_environment_is_converted_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WOOSTORE_DATABASE_URL", "postgresql://u:p@db/woo")

    assert Settings().database_url == "postgresql+psycopg://u:p@db/woo"


def test_the_cluster_is_simulated_without_a_kubeconfig() -> None:
    assert Settings().cluster_mode is ClusterMode.SIMULATED


def test_the_cluster_is_kubernetes_when_a_kubeconfig_is_set(tmp_path: Path) -> None:
    assert Settings(kubeconfig=tmp_path / "kubeconfig").cluster_mode is ClusterMode.KUBERNETES


def test_a_kubeconfig_from_the_environment_selects_kubernetes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WOOSTORE_KUBECONFIG", str(tmp_path / "kubeconfig"))

    assert Settings().cluster_mode is ClusterMode.KUBERNETES


def test_an_explicit_cluster_wins_over_the_kubeconfig(tmp_path: Path) -> None:
    settings = Settings(cluster=ClusterMode.SIMULATED, kubeconfig=tmp_path / "kubeconfig")

    assert settings.cluster_mode is ClusterMode.SIMULATED


def test_a_service_without_what_it_needs_stops_naming_every_missing_variable() -> None:
    with pytest.raises(SystemExit) as stopped:
        Settings(nats_url="nats://127.0.0.1:4222").require_runtime()

    message = str(stopped.value)
    for name in ("WOOSTORE_DATABASE_URL", "WOOSTORE_ADMIN_TOKEN", "WOOSTORE_SECRET_KEY"):
        assert name in message
    assert "WOOSTORE_NATS_URL" not in message


def test_a_service_with_what_it_needs_starts() -> None:
    Settings(
        nats_url="nats://127.0.0.1:4222",
        database_url="postgresql://u@db/woo",
        admin_token="t" * MIN_SECRET_BYTES,
        secret_key="k" * MIN_SECRET_BYTES,
    ).require_runtime()


def test_a_service_that_makes_stores_stops_on_a_default_an_owner_could_not_choose() -> None:
    settings = Settings(
        nats_url="nats://127.0.0.1:4222",
        database_url="postgresql://u@db/woo",
        admin_token="t" * MIN_SECRET_BYTES,
        secret_key="k" * MIN_SECRET_BYTES,
        store_currency="XAU",  # gold: no money a shop prices in
    )
    settings.require_runtime()  # a service making no store (the provisioner, the notifier)
    assert "store_defaults" not in vars(settings)  # never checked, so pycountry never loaded

    with pytest.raises(SystemExit) as stopped:
        settings.require_runtime(makes_stores=True)

    assert str(stopped.value).startswith("WOOSTORE_STORE_* defaults:")
    assert "ISO 4217" in str(stopped.value)


@pytest.mark.parametrize(
    ("admin_token", "secret_key", "named"),
    [
        ("short-admin-token", "k" * MIN_SECRET_BYTES, {"WOOSTORE_ADMIN_TOKEN"}),
        ("t" * MIN_SECRET_BYTES, "short-secret-key", {"WOOSTORE_SECRET_KEY"}),
        ("short-admin-token", "short-secret-key", {"WOOSTORE_ADMIN_TOKEN", "WOOSTORE_SECRET_KEY"}),
        # Bytes, not characters: 16 two-byte characters are 32 bytes, and enough.
        ("é" * 15, "é" * 16, {"WOOSTORE_ADMIN_TOKEN"}),
    ],
)
def test_a_service_with_a_short_secret_stops_naming_it_and_not_showing_it(
    admin_token: str, secret_key: str, named: set[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        Settings(
            nats_url="nats://127.0.0.1:4222",
            database_url="postgresql://u@db/woo",
            admin_token=admin_token,
            secret_key=secret_key,
        ).require_runtime()

    message = str(stopped.value)
    assert {n for n in ("WOOSTORE_ADMIN_TOKEN", "WOOSTORE_SECRET_KEY") if n in message} == named
    assert f"{MIN_SECRET_BYTES} bytes" in message
    assert admin_token not in message
    assert secret_key not in message


def test_make_run_generates_secrets_a_service_accepts(tmp_path: Path) -> None:
    generated = load_or_create_secrets(tmp_path)

    Settings(
        nats_url="nats://127.0.0.1:4222",
        database_url="postgresql://u@db/woo",
        admin_token=generated["admin_token"],
        secret_key=generated["secret_key"],
    ).require_runtime()


def test_urls_default_to_the_services_own_addresses_and_can_be_overridden() -> None:
    default = Settings(api_port=9000, notifier_port=9001)
    public = Settings(
        public_events_url="https://events.example/api/v1/events",
        dashboard_origin="https://dash.example",
    )

    assert default.events_url == "http://127.0.0.1:9001/api/v1/events"
    assert default.allowed_origin == "http://127.0.0.1:9000"
    assert public.events_url == "https://events.example/api/v1/events"
    assert public.allowed_origin == "https://dash.example"


@pytest.mark.parametrize("everywhere", ["0.0.0.0", "::"])  # noqa: S104  (a setting's value)
def test_a_service_bound_to_every_interface_is_given_out_by_its_loopback_address(
    everywhere: str,
) -> None:
    settings = Settings(api_host=everywhere, notifier_host=everywhere, notifier_port=8001)

    assert settings.events_url == "http://127.0.0.1:8001/api/v1/events"
    assert settings.allowed_origin == "http://127.0.0.1:8000"


def test_the_readme_documents_every_setting() -> None:
    # A setting nobody can find is one nobody sets; README's Configuration table lists them.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    first_cells = re.findall(r"^\|([^|]*)\|", readme, re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"WOOSTORE_[A-Z0-9_]+", cell)}
    missing = {f"WOOSTORE_{name.upper()}" for name in Settings.model_fields} - documented
    assert not missing, f"not in README's settings table: {sorted(missing)}"


def test_a_refused_value_ends_the_program_with_a_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was a traceback naming the field (``sim_time_scale``), and an out-of-range port
    was taken: 99999 listened on 34463, -5 failed the API again and again (found by an
    operator's review). The values are not echoed: a refused one may be a secret."""
    monkeypatch.setenv("WOOSTORE_SIM_TIME_SCALE", "not-a-number")
    monkeypatch.setenv("WOOSTORE_API_PORT", "99999")
    monkeypatch.setenv("WOOSTORE_LOG_LEVEL", "bogus")

    with pytest.raises(SystemExit) as refused:
        Settings.load()

    assert str(refused.value).splitlines() == [
        "refused settings (see README, Configuration):",
        "WOOSTORE_API_PORT: Input should be less than or equal to 65535",
        "WOOSTORE_SIM_TIME_SCALE: Input should be a valid number, unable to parse string as "
        "a number",
        "WOOSTORE_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'",
    ]


@pytest.mark.parametrize("share", ["10%", "2.5%", "0.5%", "100%", "500M", "1g", "0"])
def test_a_backup_check_share_is_a_share_or_an_amount_restic_takes(share: str) -> None:
    assert Settings(backup_check_share=share).backup_check_share == share


@pytest.mark.parametrize(
    "share", ["", "ten", "10 %", "-5%", "500MB", "1/10", "0%", "0.0%", "150%", "0M"]
)
def test_a_backup_check_share_restic_would_refuse_is_refused(share: str) -> None:
    # restic would refuse it at every backup, each failing, rather than once at start.
    with pytest.raises(ValidationError, match="backup_check_share"):
        Settings(backup_check_share=share)


def test_a_log_level_is_taken_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOOSTORE_LOG_LEVEL", "debug")

    assert Settings.load().log_level == "DEBUG"


def test_secrets_are_not_shown_when_settings_are_printed() -> None:
    settings = Settings(admin_token="admin-token-value", secret_key="secret-key-value")

    assert "admin-token-value" not in repr(settings)
    assert "secret-key-value" not in repr(settings)


# --- log redaction ------------------------------------------------------------------------

SECRET_KEYS = ["password", "admin_password", "token", "admin_token", "Authorization", "ticket"]
SECRET_KEYS += ["secret", "client_secret", "DB_PASSWORD"]


def test_the_redaction_processor_replaces_values_of_keys_naming_a_secret() -> None:
    event = {key: f"value-of-{key}" for key in SECRET_KEYS}
    event |= {"event": "store ready", "store_id": "abc", "slug": "shop-123"}

    redacted = _redact_secrets(None, "info", dict(event))

    for key in SECRET_KEYS:
        assert redacted[key] == "[redacted]", key
    assert redacted["event"] == "store ready"
    assert redacted["store_id"] == "abc"
    assert redacted["slug"] == "shop-123"


@pytest.fixture
def configured_logging() -> Iterator[None]:
    """Undo configure_logging's process-wide changes after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configured_logging_never_writes_a_secret(
    configured_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_format=LogFormat.JSON), "tests")
    log = get_logger("tests.redaction")

    log.info("credentials handled", password="pw-1", admin_token="tok-2", store_id="abc")
    log.bind(client_secret="sec-3").warning("bound too")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["credentials handled", "bound too"]
    assert lines[0]["password"] == "[redacted]"
    assert lines[0]["admin_token"] == "[redacted]"
    assert lines[0]["store_id"] == "abc"
    assert lines[0]["service"] == "tests"
    assert lines[1]["client_secret"] == "[redacted]"
    output = json.dumps(lines)
    for secret in ("pw-1", "tok-2", "sec-3"):
        assert secret not in output


async def test_a_ticket_in_a_url_never_reaches_the_logs(
    configured_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Browsers pass event-stream tickets as ?ticket=: uvicorn's access log, which would write
    the query string, stays silenced even at DEBUG."""
    configure_logging(Settings(log_format=LogFormat.JSON, log_level="DEBUG"), "tests")

    async def events(_: Request) -> PlainTextResponse:
        return PlainTextResponse("a stream")

    ticket = "a-ticket-that-must-not-be-logged"
    async with (
        served(Starlette(routes=[Route("/api/v1/events", events)])) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        response = await http.get("/api/v1/events", params={"ticket": ticket})
    assert response.status_code == 200

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    # What the test's own client logs is not the server's.
    served_lines = [line for line in lines if not line.get("logger", "").startswith("http")]
    assert any(line.get("logger") == "uvicorn.error" for line in served_lines)  # captured
    assert ticket not in json.dumps(served_lines)


async def test_faststreams_lines_are_json_naming_the_service_and_the_subject(
    configured_logging: None, capsys: pytest.CaptureFixture[str], nats_server: NatsServer
) -> None:
    """As the provisioner gives FastStream its logger, and as it consumes (a pull
    subscriber on a stream): its lines were coloured text on stdout, with no service, amid
    the JSON a log collector reads."""
    configure_logging(Settings(log_format=LogFormat.JSON), "tests")
    broker = NatsBroker(nats_server.url, logger=broker_logger())
    FastStream(broker, logger=broker_logger())  # which replaces the broker's context
    name_each_message(broker)
    handled = asyncio.Event()

    @broker.subscriber(
        "work.provision.*", stream=JStream("LOGGED", subjects=["work.>"]),
        durable="logged", pull_sub=PullSub(timeout=1),
    )  # fmt: skip
    async def handle(body: str) -> None:
        handled.set()

    async with broker:
        await broker.start()
        await broker.publish("hello", "work.provision.store-1", stream="LOGGED")
        async with asyncio.timeout(20):
            await handled.wait()
    captured = capsys.readouterr()

    lines = [json.loads(line) for line in captured.err.splitlines()]
    said = {line["event"]: line for line in lines if line.get("logger") == "woostore.broker"}
    assert "Received" in said, lines
    assert said["Received"]["service"] == "tests"
    # The message's subject, naming the store, not the subscription's (work.provision.*).
    assert said["Received"]["subject"] == "work.provision.store-1"
    assert said["Processed"]["subject"] == "work.provision.store-1"
    assert "\x1b[" not in captured.err + captured.out  # no colour codes, nothing on stdout
    # Stopping ended the subscriber's task; FastStream's bookkeeping line for it is left out.
    assert not [event for event in said if "is being executed" in event], said
