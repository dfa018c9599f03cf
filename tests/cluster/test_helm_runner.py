"""The real ``SubprocessHelmRunner``: argv without a shell, output captured, and a process
that outlives its deadline, or its caller, stopped rather than left running."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_cluster.helm import SubprocessHelmRunner

PY = sys.executable


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for_file(path: Path) -> str:
    """What a child process wrote to ``path``, once it has (within 10 s)."""
    async with asyncio.timeout(10):
        # Another process writes the file: there is no event to wait on, so look again.
        while not path.exists() or not path.read_text():  # noqa: ASYNC110, ASYNC240  (see above)
            await asyncio.sleep(0.01)
    return path.read_text()  # noqa: ASYNC240  (a few bytes, already written)


async def test_argv_is_passed_as_is_with_no_shell(tmp_path: Path) -> None:
    runner = SubprocessHelmRunner()
    tricky = "store; rm -rf / $(whoami) 'quoted'"

    result = await runner.run(
        [PY, "-c", "import sys; print(sys.argv[1]); sys.exit(3)", tricky], timeout=30
    )

    assert result.returncode == 3
    assert result.stdout == tricky + "\n"


async def test_a_run_past_its_timeout_is_stopped_and_transient(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner = SubprocessHelmRunner(kill_grace=5)
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )

    with pytest.raises(TransientClusterError, match=r"did not finish within 0\.5s and was stopped"):
        await runner.run([PY, "-c", script], timeout=0.5)

    assert not alive(int(pid_file.read_text()))


async def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner = SubprocessHelmRunner(kill_grace=0.2)
    script = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )

    with pytest.raises(TransientClusterError):
        await runner.run([PY, "-c", script], timeout=0.5)

    assert not alive(int(pid_file.read_text()))


async def test_a_cancelled_caller_stops_the_process(tmp_path: Path) -> None:
    """A step cancelled (deadline, shutdown) leaves no helm working underneath."""
    pid_file = tmp_path / "pid"
    runner = SubprocessHelmRunner(kill_grace=5)
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    task = asyncio.create_task(runner.run([PY, "-c", script], timeout=60))
    pid = int(await wait_for_file(pid_file))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert not alive(pid)


async def test_a_missing_binary_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentClusterError, match=r"cannot run .*no-such-helm"):
        await SubprocessHelmRunner().run([str(tmp_path / "no-such-helm"), "version"], timeout=5)
