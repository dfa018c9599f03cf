"""The CLI against the real platform: its main() run in-process, output captured."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import IO, Any

import httpx
import pytest

from woostore_cli.main import main
from woostore_devstack.platform import Platform, running_platform
from woostore_provisioner.recipe import PROVISION

__all__ = [
    "PROVISIONING",
    "TYPE",
    "Lines",
    "Platform",
    "Result",
    "api_list",
    "api_store",
    "create_ready",
    "platform",
    "run",
    "story",
    "woostore",
]


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(
        tmp_path_factory.mktemp("platform"), WOOSTORE_SIM_TIME_SCALE="0.05"
    ) as running:
        yield running


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


def run(*argv: str) -> Result:
    """``woostore ARGV``, in-process."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


def woostore(platform: Platform, *args: str, token: str | None = None) -> Result:
    """``woostore ARGS`` against ``platform``, with its token unless told otherwise."""
    token = platform.token if token is None else token
    # "--token=X": a random token may begin with "-", which argparse takes for an option.
    return run(*args, "--url", platform.api_url, f"--token={token}")


class Lines:
    """Every line a subprocess writes to ``stream``, collected by a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.items: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.items.append(line)
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], deadline: float, what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.items), deadline):
                raise AssertionError(f"not true after {deadline}s: {what}\n{''.join(self.items)}")

    def rest(self, deadline: float = 10) -> list[str]:
        """Everything, once the process closed the stream."""
        self._thread.join(deadline)
        assert not self._thread.is_alive(), "the stream did not close"
        return self.items


TYPE = "io.woostore.store."
PROVISIONING = [
    "requested",
    *(
        f"progress {index} {state}"
        for index in range(1, len(PROVISION.steps) + 1)
        for state in ("started", "completed")
    ),
    "ready",
]


def story(events: list[dict[str, Any]]) -> list[str]:
    """Events as "requested", "progress 3 started", ..., to compare with PROVISIONING."""
    told = []
    for event in events:
        kind = event["type"].removeprefix(TYPE)
        if kind == "progress":
            kind += f" {event['data']['step']['index']} {event['data']['state']}"
        told.append(kind)
    return told


def api_store(platform: Platform, store_id: str) -> dict[str, Any]:
    response = httpx.get(f"{platform.api_url}/api/v1/stores/{store_id}", headers=platform.headers)
    response.raise_for_status()
    store: dict[str, Any] = response.json()
    return store


def create_ready(platform: Platform, name: str) -> str:
    """A store made with `create --wait --json`; its id."""
    result = woostore(platform, "create", name, "--wait", "--json")
    assert result.code == 0, result.err
    store_id: str = result.json_lines()[0]["event"]["subject"]
    return store_id


def api_list(platform: Platform) -> list[dict[str, Any]]:
    response = httpx.get(f"{platform.api_url}/api/v1/stores", headers=platform.headers)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items
