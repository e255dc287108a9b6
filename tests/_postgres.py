"""A private PostgreSQL server for a test session: Debian's (or any) ``initdb`` and
``pg_ctl``, a temporary data folder, a free loopback port, password authentication; run as
the ``postgres`` user where the tests run as root (PostgreSQL refuses root). Stopped, and
its folder removed, at the end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD, DATABASE = "autobatch", "s3cret-pw", "autobatch"


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    control: tuple[str, ...] = ()
    """The ``pg_ctl -D DATA`` command line (as the server's user)."""
    options: str = ""

    def url(self, *, password: str = PASSWORD, database: str = DATABASE) -> str:
        return f"postgresql://{USER}:{password}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        """The database goes away (as a crashed or restarted server does)."""
        subprocess.run([*self.control, "-m", "immediate", "-w", "stop"], check=True,
                       capture_output=True)

    def start(self) -> None:
        subprocess.run([*self.control, "-w", "-t", "60", "-o", self.options, "start"],
                       check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[Server]:
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise FileNotFoundError("initdb/pg_ctl not found (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    # As root the server runs as ``postgres``, which must reach its folder: /tmp itself
    # (the session's own temporary folder is private to root).
    root = Path(tempfile.mkdtemp(prefix="autobatch-pg-", dir="/tmp" if as_root else None))
    prefix: list[str] = []
    if as_root:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, sockets, pwfile = root / "data", root / "sock", root / "pw"
    port = _free_port()
    try:
        pwfile.write_text(PASSWORD)
        if as_root:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        subprocess.run([*prefix, "mkdir", "-p", str(sockets)], check=True)
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
                        "--auth", "scram-sha-256", "-E", "UTF8"],
                       check=True, capture_output=True, text=True)
        server = Server("127.0.0.1", port,
                        control=(*prefix, pg_ctl, "-D", str(data), "-l", str(root / "log")),
                        options=f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
                                "-c max_connections=200 -c fsync=off")
        server.start()
        _create_database(server)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _create_database(server: Server) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg.connect(host=server.host, port=server.port, user=USER,
                                   password=PASSWORD, dbname="postgres", autocommit=True)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DATABASE}")
    conn.close()
