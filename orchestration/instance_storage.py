"""Dagster's SQLite instance storage, with commits that do not wait for the disk.

Dagster writes every event of a run (about 1,200 for the whole job, 435 of them when the run is created) as a
transaction of its own on a connection of its own. Its SQLite databases are in WAL mode, but at the default
``synchronous=FULL`` every commit waits for an fsync, and closing the last connection to a database checkpoints the
log (another fsync): 15-30 ms per event on this machine's disk, 30 s of a small run. Here every connection commits
at ``synchronous=NORMAL``, which in WAL mode keeps the database consistent through a crash of the process or the
machine (the newest events may be lost on a power cut, never the database), and each process keeps one idle
connection to the databases it used most recently, so closing Dagster's connections does not checkpoint each time.
The event log also keeps one SQLAlchemy engine per database for its lifetime: Dagster's own builds one for every
connection (two or three per event) and so compiles every statement afresh, half of what an event still cost (a
300-person run: 955 events, 5.6 s -> 3.1 s; the run 16.1 s -> 13.4 s). The run, the webserver and the daemon all
construct their instance from the ``dagster.yaml`` that `attribution` writes (``cli/runner.py``), which names this
class.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# Databases a process keeps one idle connection to: a run writes its own event shard, the index, runs and
# schedules; the webserver reads many runs, so the set is bounded (the oldest is closed and checkpointed).
HELD_DATABASES = 16

_lock = threading.Lock()
_held: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_installed = False


def _hold(path: str) -> None:
    with _lock:
        if path in _held:
            _held.move_to_end(path)
            return
        held = sqlite3.connect(path, check_same_thread=False)
        # A connection counts as open to SQLite's last-closer test only once it has read the WAL index.
        held.execute("PRAGMA schema_version").fetchone()
        _held[path] = held
        while len(_held) > HELD_DATABASES:
            _, oldest = _held.popitem(last=False)
            oldest.close()


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous=NORMAL")
        path = cursor.execute("PRAGMA database_list").fetchone()[2]
        in_wal = cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        cursor.close()
    if path and in_wal:
        _hold(path)


def install() -> None:
    """Tune every SQLite connection SQLAlchemy opens in this process from now on (idempotent)."""
    global _installed
    with _lock:
        if not _installed:
            event.listen(Engine, "connect", _on_connect)
            _installed = True


class LocalSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, with one engine per database (the most recent HELD_DATABASES) kept."""

    def __init__(self, base_dir: str, inst_data: Any = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        url = self.conn_string_for_shard(shard)
        engine = self._engines.pop(url, None) or create_engine(
            url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
        )
        self._engines[url] = engine
        while len(self._engines) > HELD_DATABASES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As Dagster's, under the storage's lock, but over the shard's kept engine.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn


class LocalSqliteStorage(DagsterSqliteStorage):
    """Dagster's default storage (runs, event logs and schedules in SQLite under ``base_dir``), tuned as above."""

    def __init__(self, base_dir: str, inst_data: Any = None):
        install()
        super().__init__(base_dir, inst_data=inst_data)
        # Dagster's constructor builds its own event log and has no hook to choose the class: replaced here (the
        # first one only created the folder and the index database, which this one then finds).
        self._event_log_storage = LocalSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> LocalSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
