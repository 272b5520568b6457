"""Dagster's SQLite instance storage, with commits that do not wait for the disk.

Dagster writes every event of a run (about 1,200 for the whole job, 435 of them when the run is created) as a
transaction of its own on a connection of its own. Its SQLite databases are in WAL mode, but at the default
``synchronous=FULL`` every commit waits for an fsync, and closing the last connection to a database checkpoints the
log (another fsync): 15-30 ms per event on this machine's disk, 30 s of a small run. Here every connection commits
at ``synchronous=NORMAL``, which in WAL mode keeps the database consistent through a crash of the process or the
machine (the newest events may be lost on a power cut, never the database), and each process keeps one idle
connection to the databases it used most recently, so closing Dagster's connections does not checkpoint each time.
About 3 ms per event. The run, the webserver and the daemon all construct their instance from the ``dagster.yaml``
that `attribution` writes (``cli/runner.py``), which names this class.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from typing import Any

from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from sqlalchemy import event
from sqlalchemy.engine import Engine

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


class LocalSqliteStorage(DagsterSqliteStorage):
    """Dagster's default storage (runs, event logs and schedules in SQLite under ``base_dir``), tuned as above."""

    def __init__(self, base_dir: str, inst_data: Any = None):
        install()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> LocalSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
