"""Backup and restore of schema raw: exact round trip on both targets, across targets, and the refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main
from tests.conftest import create_pg_database, drop_pg_database, make_target
from warehouse.backup import (
    MANIFEST_NAME,
    BackupError,
    RestoreError,
    backup_raw,
    raw_tables,
    restore_raw,
    sha256_of,
)
from warehouse.client import Warehouse, frame_checksum
from warehouse.loader import RAW_COLUMNS, load_folder
from warehouse.target import Target, target_env

LONG_USER_AGENT = "Mozilla/5.0 (X11; Linux) " + "ÄgentX" * 17_000  # ~100 KB, multi-byte UTF-8
RAW_TABLES = ("clicks", "conversions", "fx_rates", "links", "load_log", "spend")


def _csv(path: Path, header: tuple[str, ...], rows: list[str]) -> None:
    # Written by hand: an unquoted empty field is a missing value (NULL), a quoted "" is an empty string.
    path.write_text(",".join(header) + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def write_batch(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _csv(
        folder / "links.csv",
        RAW_COLUMNS["links"],
        [
            f'L{n}1,abc{n},C1,K1,instagram,"https://shop.example/p/1?a=1&b=2",2026-10-01T08:00:00Z',
            f'L{n}2,"qu""o,te",C1,,"",https://shop.example/ü/日本,2026-10-01T08:00:00+02:00',
        ],
    )
    _csv(
        folder / "clicks.csv",
        RAW_COLUMNS["clicks"],
        [
            f'c{n}1,L{n}1,2026-10-01T10:00:00+02:00,::ffff:10.0.0.1,"{LONG_USER_AGENT}","",ck1,s1,fp1,,'
            '" A.B+x@Gmail.com "',
            f'c{n}2,L9,2026-10-01T11:00:00Z,10.0.0.2,"Ünïcødé, ""comma"" 🙂","https://t.co/x\nsecond line",'
            'ck2,"",,u2,""',
            f"c{n}3,L{n}2,,,,,,,,,",
        ],
    )
    _csv(
        folder / "conversions.csv",
        RAW_COLUMNS["conversions"],
        [
            f'v{n}1,2026-10-02T09:00:00-05:00,purchase,19.99,USD,"",ab@gmail.com,ck1,,fp1,10.0.0.1,"",c{n}1',
            f"v{n}2,2026-10-02T10:00:00Z,signup,,,u2,,,,,,'; drop table raw.clicks;--,",
        ],
    )
    return folder


def load_dataset(wh: Warehouse, tmp_path: Path) -> None:
    """Two loads (two `_loaded_at` stamps) plus a table outside the contract, with every portable type."""
    load_folder(wh, write_batch(tmp_path / "batch1", 1))
    load_folder(wh, write_batch(tmp_path / "batch2", 2))
    # Written directly: whether a CSV's quoted "" arrives as '' or NULL is the loader's business (and differs by
    # engine); a backup must keep whichever the warehouse holds.
    wh.execute(
        "insert into raw.clicks (click_id, link_id, referrer, user_agent, user_id, email, _loaded_at, _source_file) "
        "values ('c_sql', '', '', ' ', null, '', cast('2026-10-03 04:05:06.789012+00' as timestamp with time zone), "
        "'manual insert: ''quoted'' path')"
    )
    wh.execute(
        "create table raw.partner_notes (note text, amount double precision, n bigint, ok boolean, day date, "
        "seen_at timestamp with time zone, naive timestamp, small smallint, i integer, r real)"
    )
    wh.execute(
        "insert into raw.partner_notes values "
        "('é\"''x', 1.25, 9007199254740993, true, date '2026-10-01', "
        "cast('2026-10-01 08:00:00.123456+00' as timestamp with time zone), timestamp '2026-10-01 08:00:00.5', "
        "-3, 42, 0.5), "
        "('', null, null, null, null, null, null, null, null, null), "
        "(null, -0.1, 0, false, date '1999-12-31', cast('2026-03-29T01:30:00Z' as timestamp with time zone), "
        "timestamp '2026-03-29 02:30:00', 7, -1, 2.75)"
    )


def _canonical_value(value: object, portable: str) -> object:
    if value is None:
        return None
    if portable == "text":
        return str(value)
    if portable == "timestamptz":
        return pd.Timestamp(value).tz_convert("UTC").isoformat()
    if portable == "timestamp":
        return pd.Timestamp(value).isoformat()
    if portable == "date":
        return pd.Timestamp(value).date().isoformat()
    if portable in ("smallint", "integer", "bigint"):
        return int(value)
    if portable in ("real", "double"):
        return float(value)
    if portable == "boolean":
        return bool(value)
    return value


def fetch_rows(wh: Warehouse, conn: object, sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
    """Rows as the driver returns them: exact Python values ('' and None stay apart, unlike a CSV round trip)."""
    if wh.target.is_duckdb:
        cur = conn.execute(sql)  # type: ignore[attr-defined]
        return [d[0] for d in cur.description], cur.fetchall()
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(sql)
        return [d.name for d in cur.description], cur.fetchall()


def snapshot(wh: Warehouse) -> dict[str, tuple[tuple[tuple[str, str], ...], str]]:
    """Per raw table: its columns with portable types and an order-independent checksum of engine-neutral values."""
    out = {}
    with wh.connect() as conn:
        for table, columns in raw_tables(wh, conn).items():
            names, rows = fetch_rows(wh, conn, f'select * from raw."{table}"')
            assert names == [c.name for c in columns]
            canonical = pd.DataFrame(
                [[_canonical_value(v, c.type) for v, c in zip(row, columns, strict=True)] for row in rows],
                columns=names,
                dtype=object,
            )
            # repr() keeps '' and None apart (frame_checksum hashes str(), where None and 'None' would collide).
            out[table] = (tuple((c.name, c.type) for c in columns), frame_checksum(canonical.map(repr)))
    return out


def count_where(wh: Warehouse, table: str, condition: str) -> int:
    return int(wh.scalar(f"select count(*) from raw.{table} where {condition}"))


def engine_checksums(wh: Warehouse) -> dict[str, str]:
    """Same-engine comparison: the frames exactly as the engine returns them, sorted-row checksums."""
    with wh.connect() as conn:
        return {t: frame_checksum(wh.query_df(f'select * from raw."{t}"', conn)) for t in raw_tables(wh, conn)}


def engine_types(wh: Warehouse) -> dict[tuple[str, str], str]:
    df = wh.query_df(
        "select table_name, column_name, data_type from information_schema.columns where table_schema = 'raw'"
    )
    return {(t, c): d for t, c, d in df.itertuples(index=False, name=None)}


def row_counts(wh: Warehouse) -> dict[str, int]:
    with wh.connect() as conn:
        return {t: int(wh.scalar(f'select count(*) from raw."{t}"', conn)) for t in raw_tables(wh, conn)}


@pytest.fixture
def second(request: pytest.FixtureRequest, target: Target, tmp_path: Path) -> Iterator[Target]:
    """A second, empty warehouse on the same engine as ``target``."""
    if target.is_duckdb:
        yield make_target("duckdb", tmp_path / "second")
        return
    admin = request.getfixturevalue("postgres_server")
    dbname = create_pg_database(admin, prefix="attr_restore")
    try:
        yield make_target("postgres", tmp_path / "second", dbname)
    finally:
        drop_pg_database(admin, dbname)


def test_dataset_holds_the_hard_cases(target: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    load_dataset(wh, tmp_path)
    assert count_where(wh, "clicks", f"user_agent = '{LONG_USER_AGENT}'") == 2
    assert count_where(wh, "clicks", "referrer = ''") >= 1  # empty strings …
    assert count_where(wh, "clicks", "user_id is null") >= 1  # … and missing values, kept apart
    assert count_where(wh, "clicks", "referrer like '%' || chr(10) || '%'") == 2
    assert int(wh.scalar("select count(distinct _loaded_at) from raw.clicks")) == 3  # two loads, one insert


def test_round_trip_is_exact(target: Target, second: Target, tmp_path: Path) -> None:
    source = Warehouse(target)
    load_dataset(source, tmp_path)
    folder = tmp_path / "backup"
    # Tiny chunks so the PostgreSQL paths stream many chunks (one row per Parquet row group / COPY).
    manifest = backup_raw(source, folder, chunk_bytes=1)

    assert set(manifest.tables) == {*RAW_TABLES, "partner_notes"}
    doc = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert doc["target"] == target.name and doc["created_at"].endswith("Z")
    counts = row_counts(source)
    for table, entry in doc["tables"].items():
        path = folder / entry["file"]
        assert entry["file"] == f"raw.{table}.parquet"
        assert entry["rows"] == counts[table]
        assert entry["sha256"] == sha256_of(path)
        assert [c["name"] for c in entry["columns"]] == pq.read_schema(path).names
    clicks_columns = {c["name"]: c["type"] for c in doc["tables"]["clicks"]["columns"]}
    assert clicks_columns["_loaded_at"] == "timestamptz" and clicks_columns["user_agent"] == "text"
    if not target.is_duckdb:  # one row per chunk: the streaming path really ran in many chunks
        assert pq.ParquetFile(folder / "raw.clicks.parquet").num_row_groups == counts["clicks"]
    schema = pq.read_schema(folder / "raw.clicks.parquet")
    assert schema.field("_loaded_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("user_agent").type == pa.string()

    result = restore_raw(Warehouse(second), folder, chunk_rows=2)
    assert result.rows == counts and result.truncated == {}
    restored = Warehouse(second)
    assert row_counts(restored) == counts
    assert engine_checksums(restored) == engine_checksums(source)
    assert snapshot(restored) == snapshot(source)
    assert engine_types(restored) == engine_types(source)
    for condition in (f"user_agent = '{LONG_USER_AGENT}'", "referrer = ''", "referrer is null", "user_id is null"):
        assert count_where(restored, "clicks", condition) == count_where(source, "clicks", condition) >= 1


def test_restore_into_a_non_empty_warehouse_is_refused(target: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    load_dataset(wh, tmp_path)
    before_counts, before = row_counts(wh), snapshot(wh)
    folder = tmp_path / "backup"
    backup_raw(wh, folder)
    with pytest.raises(RestoreError, match=r"raw\.clicks \(7 rows\)"):
        restore_raw(wh, folder)
    assert row_counts(wh) == before_counts

    # --force empties raw first, in the same transaction: the result is the backup, not a doubled warehouse.
    load_folder(wh, write_batch(tmp_path / "batch3", 3))
    result = restore_raw(wh, folder, force=True)
    assert result.truncated["clicks"] == 10
    assert row_counts(wh) == before_counts
    assert snapshot(wh) == before


def test_tampered_or_incomplete_backups_are_refused(target: Target, second: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    load_dataset(wh, tmp_path)
    folder = tmp_path / "backup"
    backup_raw(wh, folder)
    restored = Warehouse(second)

    clicks = folder / "raw.clicks.parquet"
    original = clicks.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    clicks.write_bytes(bytes(damaged))
    with pytest.raises(RestoreError, match=r"raw\.clicks: checksum mismatch"):
        restore_raw(restored, folder)
    with restored.connect() as conn:
        assert not restored.table_exists("raw", "clicks", conn)  # verified before the warehouse is touched
    clicks.write_bytes(original)

    manifest_path = folder / MANIFEST_NAME
    doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    doc["tables"]["links"]["rows"] += 1
    manifest_path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RestoreError, match=r"raw\.links: .* holds 4 rows, manifest says 5"):
        restore_raw(restored, folder)
    doc["tables"]["links"]["rows"] -= 1
    manifest_path.write_text(json.dumps(doc), encoding="utf-8")

    (folder / "raw.load_log.parquet").unlink()
    with pytest.raises(RestoreError, match=r"raw\.load_log: file .* is missing"):
        restore_raw(restored, folder)
    manifest_path.unlink()
    with pytest.raises(RestoreError, match="no backup manifest"):
        restore_raw(restored, folder)


def test_backup_refuses_to_overwrite_a_backup(target: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    load_dataset(wh, tmp_path)
    backup_raw(wh, tmp_path / "backup")
    with pytest.raises(BackupError, match="already holds a backup"):
        backup_raw(wh, tmp_path / "backup")


def test_empty_tables_and_null_only_rows_round_trip(target: Target, second: Target, tmp_path: Path) -> None:
    wh = Warehouse(target)
    wh.execute("create schema if not exists raw")
    wh.execute("create table raw.empty_one (a text, b timestamp with time zone)")
    # One text column: a NULL row is an empty CSV line on the PostgreSQL paths and must survive as a row.
    wh.execute("create table raw.one_column (a text)")
    wh.execute("insert into raw.one_column values (null), (''), ('x'), (null)")
    manifest = backup_raw(wh, tmp_path / "backup", chunk_bytes=1)
    assert manifest.tables["empty_one"].rows == 0 and manifest.tables["one_column"].rows == 4
    restore_raw(Warehouse(second), tmp_path / "backup", chunk_rows=3)
    restored = Warehouse(second)
    # Restore also creates the (empty) contract tables: a restored warehouse is always ready to load into.
    assert row_counts(restored) == {**dict.fromkeys(RAW_TABLES, 0), "empty_one": 0, "one_column": 4}
    assert {t: v for t, v in snapshot(restored).items() if t in ("empty_one", "one_column")} == snapshot(wh)
    assert count_where(restored, "one_column", "a is null") == 2


@pytest.mark.parametrize(("source_name", "dest_name"), [("duckdb", "postgres"), ("postgres", "duckdb")])
def test_cross_target_restore_is_identical(
    postgres_server: dict[str, object], tmp_path: Path, source_name: str, dest_name: str
) -> None:
    dbname = create_pg_database(postgres_server, prefix="attr_cross")
    try:
        source = Warehouse(make_target(source_name, tmp_path / "source", dbname))
        dest = Warehouse(make_target(dest_name, tmp_path / "dest", dbname))
        load_dataset(source, tmp_path)
        manifest = backup_raw(source, tmp_path / "backup")
        assert manifest.target == source_name
        restore_raw(dest, tmp_path / "backup")
        assert row_counts(dest) == row_counts(source)
        assert snapshot(dest) == snapshot(source)
        # snapshot() compares driver rows, not Warehouse.query_df frames, whose dtypes differ across engines.
    finally:
        drop_pg_database(postgres_server, dbname)


def test_cli_backup_and_restore(
    target: Target, second: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    wh = Warehouse(target)
    load_dataset(wh, tmp_path)
    folder = str(tmp_path / "backup")
    assert main(["backup", folder, "--target", target.name]) == 0
    assert "raw.clicks 7" in capsys.readouterr().out
    assert main(["backup", folder, "--target", target.name]) == 2
    assert "already holds a backup" in capsys.readouterr().err

    assert main(["restore", folder, "--target", target.name]) == 2
    err = capsys.readouterr().err
    assert "raw.clicks" in err and "--force" in err

    for key, value in target_env(second).items():
        monkeypatch.setenv(key, value)
    assert main(["restore", folder, "--target", target.name]) == 0
    assert "restored" in capsys.readouterr().out
    assert snapshot(Warehouse(second)) == snapshot(wh)

    load_folder(Warehouse(second), write_batch(tmp_path / "batch3", 3))
    assert main(["restore", folder, "--target", target.name, "--force"]) == 0
    assert "--force emptied raw.clicks (10 rows)" in capsys.readouterr().err
    assert snapshot(Warehouse(second)) == snapshot(wh)
