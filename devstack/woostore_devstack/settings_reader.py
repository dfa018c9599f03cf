"""The platform's settings as the launcher needs them (:class:`LaunchSettings`), read by a
child process: ``python -m woostore_devstack.settings_reader`` prints them as JSON.

The launcher stays resident as long as the platform, and pydantic, with what the settings
import, would add about 14 MB to it (docs/benchmarks.md, the footprint of ``make run``).
Nothing here imports them but the child's :func:`main`.

Secrets are among the settings: they reach the launcher through a pipe, never through
arguments or logs. Settings refused end the child with a line for each, naming its variable
(never its value)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from woostore_shared.settings import Settings


@dataclass(frozen=True)
class LaunchSettings:
    """What the launcher reads of the platform's settings (``woostore_shared.settings``)."""

    data_dir: Path  # resolved
    api_host: str
    api_port: int
    notifier_host: str
    notifier_port: int
    ops_host: str
    events_url: str
    nats_url: str  # "": the launcher starts NATS
    database_url: str  # "": the launcher starts PostgreSQL
    admin_token: str = field(repr=False)  # "": the data folder's own (load_or_create_secrets)
    secret_key: str = field(repr=False)

    @classmethod
    def of(cls, settings: Settings) -> LaunchSettings:
        return cls(
            data_dir=settings.data_dir.resolve(),
            api_host=settings.api_host,
            api_port=settings.api_port,
            notifier_host=settings.notifier_host,
            notifier_port=settings.notifier_port,
            ops_host=settings.ops_host,
            events_url=settings.events_url,
            nats_url=settings.nats_url,
            database_url=settings.database_url,
            admin_token=settings.admin_token.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
        )


def read_settings() -> LaunchSettings:
    """The settings, as a child process reads them. Refused, they end the launcher with the
    child's status (it has said why); a child that died or answered otherwise ends it with
    one line, never with what it printed (secrets among it)."""
    # -P: nothing of the current folder on the child's import path (a stray yaml.py).
    read = subprocess.run(
        [sys.executable, "-P", "-m", "woostore_devstack.settings_reader"],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if read.returncode < 0:
        raise SystemExit(
            f"woostore-run: reading the settings was killed (signal {-read.returncode})"
        )
    if read.returncode != 0:
        raise SystemExit(read.returncode)
    try:
        fields = json.loads(read.stdout)
        return LaunchSettings(**{**fields, "data_dir": Path(fields["data_dir"])})
    except (ValueError, TypeError, KeyError):
        raise SystemExit("woostore-run: reading the settings gave no settings") from None


def main() -> None:
    from woostore_shared.settings import Settings  # the child's alone

    fields = dataclasses.asdict(LaunchSettings.of(Settings.load()))
    print(json.dumps({**fields, "data_dir": str(fields["data_dir"])}))


if __name__ == "__main__":
    main()
