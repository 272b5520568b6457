"""Issue 22: every bad file gets a clear verdict, the same on DuckDB and PostgreSQL.

Each hostile file is generated here, loaded through the command line (``cli.main.main``) next to a valid
``links.csv`` and ``conversions.csv``, and must be refused with the file, the line and the problem named (exit 2,
no traceback, raw unchanged) or accepted with exactly the expected rows.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main
from warehouse import loader
from warehouse.client import Warehouse, qualified
from warehouse.loader import RAW_COLUMNS, RAW_SCHEMA, LoadError, load_folder
from warehouse.target import Target

CLICK_COLUMNS = list(RAW_COLUMNS["clicks"])


def click(click_id: str, **values: str) -> dict[str, str]:
    return {
        **dict.fromkeys(CLICK_COLUMNS, ""),
        "link_id": "L1",
        "clicked_at": "2026-10-01T10:00:00Z",
        **values,
        "click_id": click_id,
    }


CLICKS = [click("c1", email="a@example.com"), click("c2", user_agent="Mozilla/5.0"), click("c3", ip="10.0.0.3")]


def csv_text(rows: list[dict[str, str]], header: list[str] | None = None, quote_all: bool = False) -> str:
    header = header or CLICK_COLUMNS
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(c, "") for c in header])
    return buf.getvalue()


def write_table(path: Path, table: str, rows: list[dict[str, str]], encoding: str = "utf-8") -> None:
    path.write_text(csv_text(rows, list(RAW_COLUMNS[table])), encoding=encoding)


def folder_with_clicks(root: Path, name: str, clicks: bytes, suffix: str = "csv", encoding: str = "utf-8") -> Path:
    """A folder of valid links and conversions (in ``encoding``) plus the given bytes as the clicks file."""
    folder = root / name
    folder.mkdir(parents=True)
    links = [{"link_id": "L1", "created_at": "2026-10-01T00:00:00Z"}]
    write_table(folder / "links.csv", "links", links, encoding)
    write_table(folder / "conversions.csv", "conversions", [{"conversion_id": f"v-{name}", "click_id": "c1"}], encoding)
    (folder / f"clicks.{suffix}").write_bytes(gzip.compress(clicks) if suffix == "csv.gz" else clicks)
    return folder


def raw_state(wh: Warehouse) -> dict[str, int]:
    with wh.connect() as conn:
        return {
            t: int(wh.scalar(f"select count(*) from {qualified(RAW_SCHEMA, t)}", conn))
            if wh.table_exists(RAW_SCHEMA, t, conn)
            else 0
            for t in (*RAW_COLUMNS, "load_log")
        }


def raw_clicks(wh: Warehouse) -> pd.DataFrame:
    return wh.query_df(f"select {', '.join(CLICK_COLUMNS)} from raw.clicks order by click_id").fillna("")


@pytest.fixture
def warehouse(target: Target, tmp_path: Path) -> Warehouse:
    """A warehouse that already holds one earlier load, so a refusal can be seen to leave raw unchanged."""
    wh = Warehouse(target)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    write_table(earlier / "links.csv", "links", [{"link_id": "L0"}])
    load_folder(wh, earlier)
    return wh


def cli_load(target: Target, folder: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    code = main(["load", str(folder), "--target", target.name, *options])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_refused(
    wh: Warehouse, target: Target, folder: Path, capsys: pytest.CaptureFixture[str], *needles: str
) -> str:
    before = raw_state(wh)
    code, text = cli_load(target, folder, capsys)
    assert code == 2, text
    assert "Traceback" not in text
    error = next(line for line in text.splitlines() if line.startswith("error: "))
    assert "clicks." in error and "nothing was loaded" in error, error
    for needle in needles:
        assert needle in error, f"{needle!r} not in {error!r}"
    assert raw_state(wh) == before
    return error


# -- header ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["click_id", "email"])
def test_duplicate_required_column_is_refused(warehouse, target, tmp_path, capsys, column: str) -> None:
    header = [*CLICK_COLUMNS, column]
    folder = folder_with_clicks(tmp_path, "dup", csv_text(CLICKS, header).encode())
    assert_refused(warehouse, target, folder, capsys, "line 1", "duplicate header", f"column {column} appears 2 times")


def test_duplicate_required_column_in_parquet_is_refused(warehouse, target, tmp_path, capsys) -> None:
    columns = [pa.array([r[c] for r in CLICKS]) for c in CLICK_COLUMNS]
    table = pa.Table.from_arrays([*columns, columns[0]], names=[*CLICK_COLUMNS, "click_id"])
    folder = folder_with_clicks(tmp_path, "dup", b"")
    (folder / "clicks.csv").unlink()
    pq.write_table(table, folder / "clicks.parquet")
    assert_refused(warehouse, target, folder, capsys, "clicks.parquet: schema", "column click_id appears 2 times")


def test_duplicate_unknown_column_is_ignored_with_a_warning(warehouse, target, tmp_path, capsys) -> None:
    header = ["note", *CLICK_COLUMNS, "note"]
    folder = folder_with_clicks(tmp_path, "extra", csv_text([{**r, "note": "x"} for r in CLICKS], header).encode())
    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    assert "ignoring unknown column(s) note" in text
    assert list(raw_clicks(warehouse)["click_id"]) == ["c1", "c2", "c3"]
    assert raw_clicks(warehouse).loc[0, "email"] == "a@example.com"


def test_bom_before_a_quoted_header_is_accepted(warehouse, target, tmp_path, capsys) -> None:
    data = codecs.BOM_UTF8 + csv_text(CLICKS, quote_all=True).encode()
    folder = folder_with_clicks(tmp_path, "bom", data)
    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    assert "line 1: UTF-8 byte-order mark ignored" in text
    clicks = raw_clicks(warehouse)
    assert list(clicks["click_id"]) == ["c1", "c2", "c3"]
    assert clicks.loc[0, "email"] == "a@example.com"


# -- encodings ------------------------------------------------------------------------------------------------
ACCENTED = [click("c1", email="josé.müller@exämple.com"), click("c2", user_agent="Ça va"), click("c3")]


def test_utf16_is_refused_unless_declared(warehouse, target, tmp_path, capsys) -> None:
    data = csv_text(ACCENTED).encode("utf-16")
    folder = folder_with_clicks(tmp_path, "utf16", data, encoding="utf-16")  # --encoding covers the folder
    assert_refused(warehouse, target, folder, capsys, "line 1", "UTF-16 byte-order mark", "--encoding utf-16")

    code, text = cli_load(target, folder, capsys, "--encoding", "utf-16")
    assert code == 0, text
    assert list(raw_clicks(warehouse)["email"])[0] == "josé.müller@exämple.com"


def test_utf16_without_bom_is_refused(warehouse, target, tmp_path, capsys) -> None:
    folder = folder_with_clicks(tmp_path, "utf16le", csv_text(ACCENTED).encode("utf-16-le"))
    assert_refused(warehouse, target, folder, capsys, "line 1", "NUL bytes", "--encoding utf-16-le")


@pytest.mark.parametrize("suffix", ["csv", "csv.gz"])
def test_latin1_is_refused_then_accepted_with_encoding(warehouse, target, tmp_path, capsys, suffix: str) -> None:
    folder = folder_with_clicks(tmp_path, "latin1", csv_text(ACCENTED).encode("latin-1"), suffix)
    assert_refused(warehouse, target, folder, capsys, "line 2", "not valid utf-8", "--encoding latin-1")

    code, text = cli_load(target, folder, capsys, "--encoding", "latin-1")
    assert code == 0, text
    clicks = raw_clicks(warehouse)
    assert clicks.loc[0, "email"] == "josé.müller@exämple.com"
    assert clicks.loc[1, "user_agent"] == "Ça va"


def test_invalid_utf8_deep_in_the_file_names_its_line(warehouse, target, tmp_path, capsys) -> None:
    # Past the header's first 64 KB: found by the engine, located by the diagnosis, the same on both targets.
    rows = [click(f"c{i:05d}", user_agent="x" * 100) for i in range(1000)] + [click("late", email="caf\udce9")]
    data = csv_text(rows).encode("utf-8", "surrogateescape")
    folder = folder_with_clicks(tmp_path, "latin1_late", data)
    assert_refused(warehouse, target, folder, capsys, "line 1002", "not valid utf-8 text (bytes 0xe9)")


def test_unknown_encoding_is_a_clear_error(warehouse, target, tmp_path, capsys) -> None:
    folder = folder_with_clicks(tmp_path, "ok", csv_text(CLICKS).encode())
    code, text = cli_load(target, folder, capsys, "--encoding", "klingon")
    assert code == 2 and "--encoding klingon: unknown encoding" in text and "Traceback" not in text


# -- structure ------------------------------------------------------------------------------------------------
def test_unbalanced_quote_mid_file_is_refused(warehouse, target, tmp_path, capsys) -> None:
    lines = csv_text(CLICKS).splitlines(keepends=True)
    lines[2] = lines[2].replace("c2,", 'c2,"', 1)  # line 3 opens a quote it never closes
    folder = folder_with_clicks(tmp_path, "quote", "".join(lines).encode())
    assert_refused(warehouse, target, folder, capsys, "line 3", "unbalanced quote")


def test_unbalanced_quote_with_later_quoted_values_is_refused(warehouse, target, tmp_path, capsys) -> None:
    rows = [*CLICKS, click("c4", user_agent='He said "hi", twice')]  # written quoted, with doubled quotes
    lines = csv_text(rows).splitlines(keepends=True)
    lines[2] = lines[2].replace("c2,", 'c2,"', 1)
    folder = folder_with_clicks(tmp_path, "quote2", "".join(lines).encode())
    assert_refused(warehouse, target, folder, capsys, "line 3", "unbalanced quote")


def test_quote_inside_an_unquoted_value_is_refused(warehouse, target, tmp_path, capsys) -> None:
    # DuckDB would keep the quote as text and PostgreSQL would refuse the file: both refuse it, naming the line.
    lines = csv_text(CLICKS).splitlines(keepends=True)
    lines[3] = lines[3].replace("10.0.0.3", '10.0"0.3')
    folder = folder_with_clicks(tmp_path, "quote3", "".join(lines).encode())
    assert_refused(warehouse, target, folder, capsys, "line 4", "unbalanced quote")


@pytest.mark.parametrize("extra", [True, False], ids=["too-many", "too-few"])
def test_ragged_row_is_refused(warehouse, target, tmp_path, capsys, extra: bool) -> None:
    rows = [click("c1", user_agent="multi\nline"), *CLICKS[1:]]  # a quoted newline before: lines, not records
    lines = csv_text(rows).splitlines(keepends=True)  # line 1 header, lines 2-3 c1, line 4 c2, line 5 c3
    last = lines[4].rstrip("\n")
    lines[4] = (last + ",surplus" if extra else last.rsplit(",", 2)[0]) + "\n"
    folder = folder_with_clicks(tmp_path, "ragged", "".join(lines).encode())
    fields = len(CLICK_COLUMNS) + (1 if extra else -2)
    assert_refused(warehouse, target, folder, capsys, "line 5", f"ragged row: {fields} field(s)")


def test_blank_line_is_refused_on_every_target(warehouse, target, tmp_path, capsys) -> None:
    # DuckDB would skip it and COPY would refuse the file: the loader decides, the same for both.
    lines = csv_text(CLICKS).splitlines(keepends=True)
    folder = folder_with_clicks(tmp_path, "blank", "".join([*lines[:2], "\n", *lines[2:]]).encode())
    assert_refused(warehouse, target, folder, capsys, "line 3", "empty line, the header has 11")


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64 * 1024])
@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("a,b\n1,2\n3,4\n", None),
        ("a,b\r\n1,2\r\n3,4\r\n", None),
        ('a,b\n1,"x\n\ny"\n3,4\n', None),  # a blank line inside a quoted value is data
        ('a,b\r\n1,"x\r\n\r\ny"\r\n', None),
        ("a,b\n1,2\n\n3,4\n", "line 3: empty line"),
        ("a,b\r\n1,2\r\n\r\n3,4\r\n", "line 3: empty line"),
        ("a,b\n1,2\n\n", "line 3: empty line"),
        ("a,b\n1,2\n3\n", "line 3: ragged row: 1 field(s)"),
    ],
)
def test_scan_finds_blank_lines_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, text: str, verdict: str | None
) -> None:
    monkeypatch.setattr(loader, "SCAN_CHUNK", chunk)
    path = tmp_path / "links.csv"
    path.write_bytes(text.encode())
    f = loader.RawFile(table="links", path=path, columns=("a", "b"))
    if verdict is None or "ragged" in verdict:  # a ragged row is left to the engine's strict reader
        loader._scan_csv(f, tmp_path)
        assert f.checksum == hashlib.sha256(text.encode()).hexdigest()
        assert (loader._diagnose_csv(f) or "") == (
            f"{path}: {verdict}, the header has 2; nothing was loaded" if verdict else ""
        )
    else:
        with pytest.raises(LoadError, match=verdict):
            loader._scan_csv(f, tmp_path)


# -- NUL and control characters: one rule on every target ----------------------------------------------------
def test_nul_bytes_are_removed_and_counted(warehouse, target, tmp_path, capsys) -> None:
    rows = [click("c1", user_agent="bad\x00agent", email="x\x00@y"), click("c2", user_agent="\x00"), click("c3")]
    folder = folder_with_clicks(tmp_path, "nul", csv_text(rows).encode())
    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    assert "clicks.csv: line 2: NUL bytes removed (email 1 row(s), user_agent 2 row(s))" in text
    clicks = raw_clicks(warehouse)
    assert list(clicks["user_agent"]) == ["badagent", "", ""]
    assert clicks.loc[0, "email"] == "x@y"


def test_nul_bytes_in_parquet_are_removed_and_counted(warehouse, target, tmp_path, capsys) -> None:
    rows = [click("c1", user_agent="bad\x00agent"), click("c2")]
    folder = folder_with_clicks(tmp_path, "nulpq", b"")
    (folder / "clicks.csv").unlink()
    pd.DataFrame(rows).to_parquet(folder / "clicks.parquet", index=False)
    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    assert "clicks.parquet: NUL bytes removed (user_agent 1 row(s))" in text
    assert list(raw_clicks(warehouse)["user_agent"]) == ["badagent", ""]


def test_other_control_characters_arrive_unchanged(warehouse, target, tmp_path, capsys) -> None:
    nasty = "bell\x07 esc\x1b[31m vt\x0b ff\x0c del\x7f c1\x85 cr\r lf\n tab\t bom\ufeff"
    folder = folder_with_clicks(tmp_path, "ctrl", csv_text([click("c1", user_agent=nasty)]).encode())
    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    assert raw_clicks(warehouse).loc[0, "user_agent"] == nasty


# -- the same content twice -----------------------------------------------------------------------------------
def test_a_folder_loaded_twice_is_skipped_unless_forced(warehouse, target, tmp_path, capsys) -> None:
    folder = folder_with_clicks(tmp_path, "twice", csv_text(CLICKS).encode())
    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    once = raw_state(warehouse)

    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    notices = [line for line in text.splitlines() if line.startswith("notice: ")]
    assert len(notices) == 3 and all("already loaded" in n and "--force" in n for n in notices), text
    assert "nothing loaded" in text
    assert raw_state(warehouse) == once

    # A copy under another name is the same content; a new file beside it is loaded.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "clicks_again.csv").write_bytes((folder / "clicks.csv").read_bytes())
    write_table(copy / "conversions.csv", "conversions", [{"conversion_id": "v-new"}])
    code, text = cli_load(target, copy, capsys)
    assert code == 0 and "clicks_again.csv: skipped" in text and "raw.conversions +1" in text, text

    code, text = cli_load(target, folder, capsys, "--force")
    assert code == 0 and "notice" not in text, text
    after = raw_state(warehouse)
    assert after["clicks"] == 2 * once["clicks"] and after["load_log"] == once["load_log"] + 4
    log = warehouse.query_df("select source_file, content_sha256 from raw.load_log where table_name = 'clicks'")
    assert log["content_sha256"].nunique() == 1 and log["content_sha256"].str.len().eq(64).all()


def test_checksum_column_is_added_to_an_existing_load_log(target, tmp_path, capsys) -> None:
    wh = Warehouse(target)
    wh.execute("create schema if not exists raw")
    wh.execute(  # the load_log of a warehouse made before content checksums
        "create table raw.load_log (loaded_at timestamp with time zone not null, table_name text not null, "
        "source_file text not null, row_count bigint not null)"
    )
    wh.execute(
        "insert into raw.load_log values (cast('2026-01-01T00:00:00Z' as timestamp with time zone), 'x', 'y', 1)"
    )
    folder = folder_with_clicks(tmp_path, "migrate", csv_text(CLICKS).encode())
    code, text = cli_load(target, folder, capsys)
    assert code == 0, text
    log = wh.query_df("select table_name, content_sha256 from raw.load_log order by loaded_at")
    assert log["content_sha256"].isna().tolist() == [True, False, False, False]
