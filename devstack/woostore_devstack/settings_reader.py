"""``python -m woostore_devstack.settings_reader``: the platform's settings as the launcher
needs them (:class:`~woostore_devstack.launcher.LaunchSettings`), as JSON on standard
output. Run by the launcher, which never loads pydantic itself (``read_settings``).

Secrets are among them: they go to the launcher through a pipe, never through arguments
or logs. Settings refused end this with a line for each, naming its variable."""

from __future__ import annotations

import dataclasses
import json

from woostore_devstack.launcher import LaunchSettings
from woostore_shared.settings import Settings


def main() -> None:
    fields = dataclasses.asdict(LaunchSettings.of(Settings.load()))
    print(json.dumps({**fields, "data_dir": str(fields["data_dir"])}))


if __name__ == "__main__":
    main()
