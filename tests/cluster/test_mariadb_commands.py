"""The Kubernetes driver's database commands, run for real: ``DUMP_DATABASE`` and
``LOAD_DATABASE`` exactly as the driver execs them in a store's MariaDB container, against a
real MariaDB server (Debian's ``mariadb-server``, installed by ``make mariadb``) set up as the
chart sets up the container: a database and a user whose password is in a file named by
``MARIADB_PASSWORD_FILE``.

Only the transport differs: here the commands run as local processes, there through the
API server's exec. The clients find the server by the socket an option file in their home
names, as they find the container's own through the image's configuration. The chart runs
MariaDB 11.4; Debian 12 has 10.11, whose dump and client speak the same SQL for these
tables."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from woostore_cluster.kubernetes import DUMP_DATABASE, LOAD_DATABASE

START_SECONDS = 60.0
SQL_SECONDS = 30.0  # a statement that waits on a lock this long is held by one that won't end
PASSWORD = "correct-horse-battery-staple"  # a throwaway server's
SCHEMA = """
CREATE TABLE wp_wc_orders (
    id BIGINT UNSIGNED PRIMARY KEY,
    status VARCHAR(20) NOT NULL,
    total DECIMAL(26, 8) NOT NULL,
    billing_email VARCHAR(320) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_options (
    option_name VARCHAR(191) PRIMARY KEY,
    option_value LONGTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
CREATE TABLE wp_blobs (id INT PRIMARY KEY, bytes LONGBLOB NOT NULL) ENGINE=InnoDB;
CREATE TABLE wp_order_log (order_id BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB;
CREATE TRIGGER log_order AFTER INSERT ON wp_wc_orders
    FOR EACH ROW INSERT INTO wp_order_log VALUES (NEW.id);
CREATE PROCEDURE order_count() SELECT COUNT(*) FROM wp_wc_orders;
INSERT INTO wp_wc_orders VALUES
    (101, 'wc-processing', 499.00, 'asha@example.com'),
    (102, 'wc-completed', 1299.50, 'ravi@example.com'),
    (103, 'wc-on-hold', 89.99, 'zoë@example.com');
INSERT INTO wp_options VALUES ('blogname', 'Chai & Co — ☕ Bengaluru'), ('siteurl', 'https://chai.example.com');
INSERT INTO wp_blobs VALUES (1, UNHEX('{all_bytes}'));
""".replace("{all_bytes}", bytes(range(256)).hex())


@dataclass(frozen=True)
class MariaDB:
    socket: Path
    container_env: dict[str, str]  # what the chart gives the MariaDB container, and a home

    def sql(self, statements: str) -> str:
        """``statements`` run as the database's own user; what they print, tab-separated."""
        done = subprocess.run(  # our own command line
            [_binary("mariadb"), "--batch", "--skip-column-names", "--user=wordpress",
             "wordpress", "--execute", statements],
            env={**self.container_env, "MYSQL_PWD": PASSWORD},
            capture_output=True, text=True, check=False, timeout=SQL_SECONDS,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run(self, command: tuple[str, ...], stdin: bytes = b"") -> bytes:
        """``command`` as the driver execs it in the container: its environment, nothing else."""
        done = subprocess.run(  # the driver's own command line
            command, input=stdin, env=self.container_env, capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None:
        pytest.fail(f"{name} is missing: `make mariadb` installs Debian's mariadb-server")
    return found


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[MariaDB]:
    data, socket = tmp_path / "data", tmp_path / "mysqld.sock"
    user = getpass.getuser()  # mariadbd runs as whoever runs the tests, root or not
    subprocess.run(
        [_binary("mariadb-install-db"), "--no-defaults", f"--datadir={data}", f"--user={user}",
         "--auth-root-authentication-method=socket", f"--auth-root-socket-user={user}",
         "--skip-test-db"],
        capture_output=True, check=True,
    )  # fmt: skip
    server = subprocess.Popen(
        [_binary("mariadbd"), "--no-defaults", f"--datadir={data}", f"--socket={socket}",
         "--skip-networking", f"--user={user}", f"--pid-file={tmp_path / 'mariadbd.pid'}",
         f"--log-error={tmp_path / 'mariadbd.log'}", "--innodb-buffer-pool-size=16M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_it_answers(socket, server, tmp_path / "mariadbd.log")
        password_file = tmp_path / "mariadb-password"
        password_file.write_text(PASSWORD)
        # Read after the system's option files (Debian's names its own socket), so it wins.
        (tmp_path / ".my.cnf").write_text(f"[client]\nsocket={socket}\n")
        subprocess.run(  # as the image's entrypoint makes them, from its env
            [_binary("mariadb"), "--no-defaults", f"--socket={socket}", "--user=root",
             "--execute", "CREATE DATABASE wordpress; "
             f"CREATE USER 'wordpress'@'localhost' IDENTIFIED BY '{PASSWORD}'; "
             "GRANT ALL ON wordpress.* TO 'wordpress'@'localhost';"],
            capture_output=True, check=True,
        )  # fmt: skip
        yield MariaDB(
            socket,
            {
                "PATH": os.environ["PATH"],
                "MARIADB_USER": "wordpress",
                "MARIADB_DATABASE": "wordpress",
                "MARIADB_PASSWORD_FILE": str(password_file),
                "HOME": str(tmp_path),
            },
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_until_it_answers(socket: Path, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mariadbd exited ({server.returncode}): {log.read_text()[-2000:]}")
        pinged = subprocess.run(
            [_binary("mariadb-admin"), "--no-defaults", f"--socket={socket}", "--user=root",
             "ping"],
            capture_output=True, check=False,
        )  # fmt: skip
        if pinged.returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail(f"mariadbd did not answer within {START_SECONDS:.0f} s: {log.read_text()[-2000:]}")


TABLES = ("wp_wc_orders", "wp_options", "wp_order_log")


def _rows(mariadb: MariaDB, table: str) -> str:
    return mariadb.sql(f"SELECT * FROM {table} ORDER BY 1")  # noqa: S608 (our own table names)


def test_a_dump_loaded_back_restores_exactly_what_was_dumped(mariadb: MariaDB) -> None:
    mariadb.sql(SCHEMA)
    before = {table: _rows(mariadb, table) for table in TABLES}

    dump = mariadb.run(DUMP_DATABASE)

    assert b"-- MariaDB dump" in dump[:200]  # after 11.x's "sandbox mode" line, if any
    # What the store does after its backup: orders deleted, changed and added, its name
    # changed, its bytes overwritten, its procedure dropped.
    mariadb.sql(
        "DELETE FROM wp_wc_orders WHERE id = 101;"
        "UPDATE wp_wc_orders SET status = 'wc-refunded' WHERE id = 102;"
        "INSERT INTO wp_wc_orders VALUES (104, 'wc-processing', 10.00, 'new@example.com');"
        "UPDATE wp_options SET option_value = 'Renamed' WHERE option_name = 'blogname';"
        "UPDATE wp_blobs SET bytes = 'overwritten';"
        "DROP PROCEDURE order_count;"
    )

    mariadb.run(LOAD_DATABASE, stdin=dump)

    after = {table: _rows(mariadb, table) for table in TABLES}
    assert after == before
    assert "zoë@example.com" in after["wp_wc_orders"]
    assert "Chai & Co — ☕ Bengaluru" in after["wp_options"]
    assert mariadb.sql("SELECT HEX(bytes) FROM wp_blobs").strip() == bytes(range(256)).hex().upper()
    assert mariadb.sql("CALL order_count()").strip() == "3"
    # The trigger came back too: a new order is logged again.
    mariadb.sql("INSERT INTO wp_wc_orders VALUES (105, 'wc-pending', 1.00, 'x@example.com')")
    assert mariadb.sql("SELECT order_id FROM wp_order_log WHERE order_id = 105").strip() == "105"


def test_a_dump_is_one_consistent_snapshot_while_the_store_keeps_writing(
    mariadb: MariaDB,
) -> None:
    """--single-transaction: InnoDB's snapshot, no table locked, so orders placed while the
    dump runs neither wait for it nor appear half in it."""
    mariadb.sql(SCHEMA)
    mariadb.sql(
        "CREATE TABLE wp_bulk (id INT PRIMARY KEY, payload VARCHAR(200)) ENGINE=InnoDB;"
        "INSERT INTO wp_bulk SELECT seq, REPEAT('x', 200) FROM seq_1_to_200000;"
    )
    dumping = subprocess.Popen(  # the driver's own command line
        DUMP_DATABASE, env=mariadb.container_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert dumping.stdout is not None
    assert dumping.stderr is not None
    # Past the first table's rows: the dump is inside wp_bulk, its snapshot taken.
    first = dumping.stdout.read(1 << 16)
    # An order placed now: the dump must not wait for it, nor it for the dump.
    mariadb.sql("INSERT INTO wp_wc_orders VALUES (200, 'wc-processing', 5.00, 'late@example.com')")
    dump = first + dumping.stdout.read()  # the file object's, not communicate(): it has read ahead
    assert dumping.wait(timeout=120) == 0, dumping.stderr.read().decode()

    mariadb.sql("DROP TABLE wp_bulk; DELETE FROM wp_wc_orders;")
    mariadb.run(LOAD_DATABASE, stdin=dump)

    assert mariadb.sql("SELECT COUNT(*) FROM wp_bulk").strip() == "200000"
    assert mariadb.sql("SELECT id FROM wp_wc_orders ORDER BY id").split() == ["101", "102", "103"]
