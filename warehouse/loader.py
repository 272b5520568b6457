"""`attribution load PATH`: append raw files to schema ``raw`` in one transaction.

Every raw column is stored as text exactly as delivered; typing, cleaning and deduplication belong to staging.
DuckDB reads the files with its native readers; PostgreSQL receives them through ``COPY``; Spark receives them as
Arrow tables read on the driver with the same dialect (every file is read before the first is written, since Spark's
Parquet tables have no transaction to roll back).

Every file gets a verdict before anything of the load is kept: it is read, refused with a message naming the
file, the line and the problem, or skipped because the same content was loaded before. The checks, by cost:

* the header (first line only): encoding, byte-order mark, duplicate / missing / unknown columns;
* one streaming pass over each CSV file (:func:`_scan_csv`): the content checksum, the NUL bytes and the quote
  parity, at C speed (about 0.2 s per 350 MB of CSV, ~6% of a bare DuckDB load);
* the structure (ragged rows, unterminated quotes, invalid UTF-8) is checked by the engine's own reader in strict
  mode while it loads, at no extra cost; only when the engine refuses a file does a slow Python pass
  (:func:`_diagnose_csv`) locate the problem, so every target reports the same line and words.

NUL bytes cannot be stored in PostgreSQL text, so they are removed on every target (with a warning counting the
affected rows per column); every other character, control characters included, arrives in raw unchanged.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import logging
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from warehouse.client import Warehouse, qualified, quote_ident

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"
RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "links": ("link_id", "short_code", "campaign_id", "creator_id", "channel", "destination_url", "created_at"),
    "clicks": (
        "click_id", "link_id", "clicked_at", "ip", "user_agent", "referrer", "cookie_id", "session_id",
        "device_fingerprint", "user_id", "email",
    ),
    "conversions": (
        "conversion_id", "converted_at", "event_type", "revenue", "currency", "user_id", "email", "cookie_id",
        "session_id", "device_fingerprint", "ip", "user_agent", "click_id",
    ),
    # What one unit of `currency` is worth in the base currency (dbt var fx_base_currency) on `rate_date`.
    "fx_rates": ("rate_date", "currency", "rate"),
    # What was spent on `spend_date`, given for exactly one of link, campaign, creator or channel (optional file).
    "spend": ("spend_date", "link_id", "campaign_id", "creator_id", "channel", "amount", "currency"),
}  # fmt: skip
METADATA_COLUMNS = ("_loaded_at", "_source_file")
SUFFIXES = (".csv", ".csv.gz", ".parquet")
# raw.load_log columns added after the first release, each with its type: ensure_raw_tables adds them to
# existing warehouses (`add column if not exists` works on both engines).
LOAD_LOG_ADDED_COLUMNS = {"content_sha256": "text"}
DEFAULT_ENCODING = "utf-8"
# Bytes read per step of the streaming pass: small enough to stay in cache for the numpy quote count.
SCAN_CHUNK = 4 * 1024 * 1024
# The longest header line read before giving up (the same bound as DuckDB's max_line_size below).
MAX_LINE_BYTES = 4_000_000
QUOTE, NEWLINE, CARRIAGE_RETURN = ord('"'), ord("\n"), ord("\r")
NOTHING_LOADED = "nothing was loaded"
# A file that cannot be opened, or a truncated or corrupt gzip stream.
UNREADABLE = (OSError, EOFError, zlib.error)


class LoadError(Exception):
    """A load that was refused; nothing of it was written."""


@dataclass
class RawFile:
    table: str
    path: Path
    columns: tuple[str, ...]  # header names as delivered, in file order
    encoding: str = DEFAULT_ENCODING
    checksum: str | None = None  # sha256 of the content (decompressed for .csv.gz)
    # A cleaned UTF-8 copy (NUL removed, or transcoded from --encoding) the engines read instead of ``path``.
    read_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    nul_rows: Counter[str] = field(default_factory=Counter)  # rows whose NUL bytes were removed, per column

    @property
    def format(self) -> str:
        return next(s for s in SUFFIXES[::-1] if self.path.name.endswith(s))

    @property
    def source(self) -> Path:
        return self.read_path or self.path

    @property
    def load_columns(self) -> tuple[str, ...]:
        """One unique name per position: the contract's name for a required column, a placeholder otherwise
        (unknown columns are ignored, even when they repeat)."""
        required = set(RAW_COLUMNS[self.table])
        return tuple(c if c in required else f"_ignored_{i}" for i, c in enumerate(self.columns, start=1))


@dataclass
class LoadResult:
    loaded_at: datetime
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # files skipped because their content was already loaded
    skipped: list[Path] = field(default_factory=list)


def raw_table_ddl(table: str, spark: bool = False) -> str:
    # Spark's Parquet tables take neither NOT NULL nor the name text; the loader fills these columns itself.
    text, not_null, using = ("string", "", " using parquet") if spark else ("text", " not null", "")
    cols = [f"{quote_ident(c)} {text}" for c in RAW_COLUMNS[table]]
    cols += [f'"_loaded_at" timestamp with time zone{not_null}', f'"_source_file" {text}{not_null}']
    return f"create table if not exists {qualified(RAW_SCHEMA, table)} ({', '.join(cols)}){using}"


def ensure_raw_tables(wh: Warehouse, conn: Any) -> None:
    wh.ensure_schemas(conn)
    spark = wh.target.is_spark
    for table in RAW_COLUMNS:
        wh.execute(raw_table_ddl(table, spark), conn)
    text, not_null, using = ("string", "", " using parquet") if spark else ("text", " not null", "")
    added = "".join(f", {quote_ident(c)} {text}" for c in LOAD_LOG_ADDED_COLUMNS) if spark else ""
    wh.execute(
        f"create table if not exists {qualified(RAW_SCHEMA, 'load_log')} ("
        f'"loaded_at" timestamp with time zone{not_null}, "table_name" {text}{not_null}, '
        f'"source_file" {text}{not_null}, "row_count" bigint{not_null}{added}){using}',
        conn,
    )
    if spark:  # a warehouse that starts on Spark starts with every column
        return
    if wh.target.is_postgres:
        # Staging's incremental runs read the rows loaded after their watermark: through this index rather than a
        # scan of every raw row, which on a row store reads every column (dbt_project/macros: stored_watermark).
        for table in RAW_COLUMNS:
            wh.execute(
                f"create index if not exists {quote_ident(f'{table}_loaded_at')} "
                f"on {qualified(RAW_SCHEMA, table)} (_loaded_at)",
                conn,
            )
    for column, sql_type in LOAD_LOG_ADDED_COLUMNS.items():
        wh.execute(
            f"alter table {qualified(RAW_SCHEMA, 'load_log')} "
            f"add column if not exists {quote_ident(column)} {sql_type}",
            conn,
        )


def _table_of(path: Path) -> str | None:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            for table in RAW_COLUMNS:
                if stem == table or stem.startswith(table + "_") or stem.startswith(table + "-"):
                    return table
    return None


def _open_bytes(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # type: ignore[return-value]


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise LoadError(f"--encoding {encoding}: unknown encoding; {NOTHING_LOADED}") from None


def _not_encoded(path: Path, encoding: str, line: int, exc: UnicodeDecodeError) -> LoadError:
    bad = " ".join(f"0x{b:02x}" for b in exc.object[exc.start : min(exc.end, exc.start + 4)])
    hint = (
        "; if the file uses another encoding, load it with --encoding (for example --encoding latin-1)"
        if _codec(encoding) == "utf-8"
        else ""
    )
    return LoadError(f"{path}: line {line}: not valid {encoding} text (bytes {bad}){hint}; {NOTHING_LOADED}")


def _decoded(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec, "replace")
    except UnicodeError:  # a UTF-16 stream cut before its byte-order mark
        return data.decode("latin-1")


def _line_of(exc: UnicodeDecodeError, codec: str) -> int:
    """The line (1-based, within the decoded buffer) of a decoding error."""
    return _decoded(exc.object[: exc.start], codec).count("\n") + 1


def _csv_header(path: Path, encoding: str) -> tuple[tuple[str, ...], list[str]]:
    """The header names of a CSV file and the notes on what was accepted; refuses an unreadable header."""
    try:
        with _open_bytes(path) as fh:
            head = fh.read(64 * 1024)
            while b"\n" not in head and len(head) < MAX_LINE_BYTES:
                more = fh.read(64 * 1024)
                if not more:
                    break
                head += more
    except UNREADABLE as exc:
        raise LoadError(f"{path}: could not be read: {exc}; {NOTHING_LOADED}") from exc
    if not head.strip():
        raise LoadError(f"{path}: empty file, expected a header row; {NOTHING_LOADED}")
    codec, notes = _codec(encoding), []
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and not codec.startswith("utf-16"):
        raise LoadError(
            f"{path}: line 1: the file starts with a UTF-16 byte-order mark: it is UTF-16 text, not {encoding}; "
            f"convert it to UTF-8 or load it with --encoding utf-16; {NOTHING_LOADED}"
        )
    if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
        # Unambiguous: a UTF-8 file that says so. Both engines skip it (DuckDB's reader, COPY's header line).
        head = head[len(codecs.BOM_UTF8) :]
        notes.append(f"{path}: line 1: UTF-8 byte-order mark ignored")
    first_bytes = head.split(b"\n", 1)[0]
    wide = codec.startswith(("utf-16", "utf-32"))  # their NUL bytes are part of the characters
    if (b"\x00" in first_bytes and not wide) or (wide and "\x00" in _decoded(first_bytes, codec)):
        raise LoadError(
            f"{path}: line 1: the header holds NUL bytes, so the file is not {encoding} text (UTF-16 without a "
            f"byte-order mark?); convert it to UTF-8 or load it with --encoding utf-16-le (or -be); {NOTHING_LOADED}"
        )
    try:
        text = codecs.getincrementaldecoder(codec)("strict").decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise _not_encoded(path, encoding, _line_of(exc, codec), exc) from exc
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    names = next(csv.reader([first]), [])
    return tuple(c.strip() for c in names), notes


def _header(path: Path, encoding: str = DEFAULT_ENCODING) -> tuple[tuple[str, ...], list[str]]:
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            return tuple(pq.read_schema(path).names), []
        except Exception as exc:  # not Parquet at all, or a damaged footer
            raise LoadError(f"{path}: not a readable Parquet file: {exc}; {NOTHING_LOADED}") from exc
    return _csv_header(path, encoding)


def _check_columns(f: RawFile) -> None:
    where = f"{f.path}: line 1" if f.format != ".parquet" else f"{f.path}: schema"
    required = RAW_COLUMNS[f.table]
    repeated = {c: n for c, n in Counter(f.columns).items() if n > 1 and c in required}
    if repeated:
        described = "; ".join(
            f"column {c} appears {n} times (fields {', '.join(str(i) for i, x in enumerate(f.columns, 1) if x == c)})"
            for c, n in repeated.items()
        )
        raise LoadError(f"{where}: duplicate header name(s): {described}; refusing to pick one; {NOTHING_LOADED}")
    missing = [c for c in required if c not in f.columns]
    if missing:
        raise LoadError(
            f"{f.path}: missing required column(s) {', '.join(missing)} for raw.{f.table}; {NOTHING_LOADED}"
        )


def discover(folder: Path, encoding: str = DEFAULT_ENCODING) -> list[RawFile]:
    """Find and validate the raw files of a folder (their headers) before anything touches the warehouse."""
    if not folder.is_dir():
        raise LoadError(f"{folder}: not a folder")
    _codec(encoding)
    files = []
    for path in sorted(folder.iterdir()):
        table = _table_of(path)
        if table is not None and path.is_file():
            columns, notes = _header(path, encoding)
            files.append(RawFile(table=table, path=path, columns=columns, encoding=encoding, warnings=notes))
    if not files:
        raise LoadError(f"{folder}: no raw files found (expected {', '.join(RAW_COLUMNS)} as {', '.join(SUFFIXES)})")
    for f in files:
        _check_columns(f)
    return files


# -- the streaming pass -----------------------------------------------------------------------------------
def _scan_csv(f: RawFile, workdir: Path) -> None:
    """One pass over a CSV file: its checksum, NUL bytes, quote parity and blank lines; a UTF-8 copy if needed.

    Cost: per 4 MB chunk a sha256, a memchr for NUL and numpy compares for quotes and newlines: ~0.25 s per
    350 MB of CSV (~6% of a bare DuckDB load; the engine then reads the file from the page cache). A ``.csv.gz``
    is decompressed for it (zlib, ~0.5 s per 350 MB). A file in another --encoding is decoded and rewritten as
    UTF-8 in the same pass. Only a file with NUL bytes, an odd quote count or a blank line takes a slow path.
    """
    codec = _codec(f.encoding)
    digest, quotes, has_nul, blank, lines, tail = hashlib.sha256(), 0, False, False, 1, ""
    last_newline, last_byte = -2, 0  # the previous chunk's last newline (relative to this chunk) and last byte
    out = None
    if codec != "utf-8":
        f.read_path = workdir / f"{f.path.name}.utf-8.csv"
        out = open(f.read_path, "wb")  # noqa: SIM115 - closed below, in the same function
        decoder = codecs.getincrementaldecoder(codec)("strict")
    try:
        with _open_bytes(f.path) as fh:
            while chunk := fh.read(SCAN_CHUNK):
                digest.update(chunk)
                if out is None:
                    has_nul = has_nul or b"\x00" in chunk
                    data = np.frombuffer(chunk, dtype=np.uint8)
                    quotes += int(np.count_nonzero(data == QUOTE))
                    if not blank:
                        newlines = np.flatnonzero(data == NEWLINE)
                        blank = _has_blank_line(data, newlines, last_newline, last_byte)
                        last_newline = (int(newlines[-1]) if newlines.size else last_newline) - len(chunk)
                        last_byte = int(data[-1])
                    continue
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise _not_encoded(f.path, f.encoding, lines - 1 + _line_of(exc, codec), exc) from exc
                lines += text.count("\n")
                has_nul = has_nul or "\x00" in text
                quotes += text.count('"')
                joined = tail + text  # a blank line may straddle two chunks
                blank = blank or "\n\n" in joined or "\n\r\n" in joined
                tail = text[-2:]
                out.write((text.lstrip("\ufeff") if out.tell() == 0 else text).encode("utf-8"))
            if out is not None:
                out.write(decoder.decode(b"", final=True).encode("utf-8"))
    except UnicodeDecodeError as exc:  # the end of the file cut a character in two
        raise _not_encoded(f.path, f.encoding, lines, exc) from exc
    except UNREADABLE as exc:
        raise LoadError(f"{f.path}: could not be read: {exc}; {NOTHING_LOADED}") from exc
    finally:
        if out is not None:
            out.close()
    f.checksum = digest.hexdigest()
    if quotes % 2:
        line = _unbalanced_quote_line(f.source)
        raise LoadError(
            f"{f.path}: line {line}: unbalanced quote: a quote opened on this line is never closed (a quote inside "
            f'a value must be doubled, "", and the value quoted); {NOTHING_LOADED}'
        )
    if blank:  # perhaps a blank line inside a quoted value, which is fine: the diagnosis tells
        verdict = _diagnose_csv(f)
        if verdict:
            raise LoadError(verdict)
    if has_nul:
        _remove_nul(f, workdir)


def _has_blank_line(data: np.ndarray, newlines: np.ndarray, last_newline: int, last_byte: int) -> bool:
    """Whether a newline follows a newline (or CR LF) directly. DuckDB skips such lines and COPY refuses them,
    so the loader decides for both (a diff of the newline positions per chunk)."""
    if newlines.size == 0:
        return False
    gaps = np.diff(newlines, prepend=last_newline)
    if np.any(gaps == 1):
        return True
    crlf = np.flatnonzero(gaps == 2)
    before = newlines[crlf] - 1
    previous = np.where(before >= 0, data[np.maximum(before, 0)], last_byte)
    return bool(np.any(previous == CARRIAGE_RETURN))


def _unbalanced_quote_line(path: Path) -> int:
    """The line where the quote that is never closed opens (slow path: only for a file with an odd quote count)."""
    opened, odd = 0, False
    with _open_bytes(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.count(b'"') % 2:
                odd = not odd
                if odd:
                    opened = lineno
    return opened


def _remove_nul(f: RawFile, workdir: Path) -> None:
    """NUL bytes cannot be stored in PostgreSQL text, so they are removed on every target; count the rows.

    Slow path (a second pass with a per-row Python count), taken only by a file that holds NUL bytes.
    """
    source = f.source
    per_column: Counter[str] = Counter()
    first_line = None
    with _open_bytes(source) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = _csv_reader(fh)
        next(reader, None)
        names = f.load_columns
        start = 2
        try:
            for row in reader:
                hit = [names[i] for i, v in enumerate(row) if "\x00" in v and i < len(names)]
                if hit:
                    first_line = first_line or start
                    per_column.update(hit)
                start = reader.line_num + 1
        except csv.Error:
            pass  # the engine's strict reader will refuse the file and the diagnosis will say where
    clean = workdir / f"{f.path.name}.without-nul.csv"
    with _open_bytes(source) as fh, open(clean, "wb") as out:
        while chunk := fh.read(SCAN_CHUNK):
            out.write(chunk.replace(b"\x00", b""))
    f.read_path = clean
    f.nul_rows = Counter({c: n for c, n in per_column.items() if not c.startswith("_ignored_")})
    f.warnings.append(_nul_warning(f, first_line))


def _nul_warning(f: RawFile, first_line: int | None) -> str:
    detail = ", ".join(f"{c} {n} row(s)" for c, n in sorted(f.nul_rows.items())) or "only in ignored columns"
    where = f"{f.path}: line {first_line}" if first_line else str(f.path)
    return f"{where}: NUL bytes removed ({detail}); PostgreSQL text cannot hold NUL, so every target removes them"


def _csv_reader(fh: Any, strict: bool = False) -> Any:
    # The engines accept values up to max_line_size; Python's csv module stops at 128 KB unless told.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    return csv.reader(fh, strict=strict)


def _diagnose_csv(f: RawFile) -> str | None:
    """What is wrong with a CSV file the engine refused, with its line, in the same words on every target.

    Slow path (Python reads the whole file), taken only after the engine refused the file.
    """
    with _open_bytes(f.source) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return str(_not_encoded(f.path, f.encoding, lineno, exc))
    expected = len(f.columns)
    with _open_bytes(f.source) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
        reader = _csv_reader(fh, strict=True)
        next(reader, None)
        start = reader.line_num + 1
        try:
            for row in reader:
                if len(row) != expected:
                    what = "empty line" if not row else f"ragged row: {len(row)} field(s)"
                    return f"{f.path}: line {start}: {what}, the header has {expected}; {NOTHING_LOADED}"
                start = reader.line_num + 1
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                return (
                    f"{f.path}: line {start}: unbalanced quote: the quoted value that starts on this line is never "
                    f"closed; {NOTHING_LOADED}"
                )
            return f"{f.path}: line {start}: malformed CSV ({exc}); {NOTHING_LOADED}"
    return None


def extra_columns(f: RawFile) -> list[str]:
    return [c for c in f.columns if c not in RAW_COLUMNS[f.table]]


def _next_loaded_at(wh: Warehouse, conn: Any) -> datetime:
    # Incremental staging selects rows loaded after its last watermark, so load stamps must strictly increase
    # even if the clock steps back.
    now = datetime.now(UTC)
    last = wh.scalar(f"select max(loaded_at) from {qualified(RAW_SCHEMA, 'load_log')}", conn)
    if last is not None:
        last = last if last.tzinfo else last.replace(tzinfo=UTC)
        if now <= last:
            now = last + timedelta(microseconds=1)
    return now


def newest_load(wh: Warehouse, conn: Any = None) -> datetime | None:
    """Stamp of the newest load (None before the first one)."""
    if conn is None:
        with wh.connect() as own:
            return newest_load(wh, own)
    if not wh.table_exists(RAW_SCHEMA, "load_log", conn):
        return None
    last = wh.scalar(f"select max(loaded_at) from {qualified(RAW_SCHEMA, 'load_log')}", conn)
    if last is None:
        return None
    return last if last.tzinfo else last.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LoadedEventDays:
    """Calendar days (as written in the raw text, before any UTC shift) of the events in a set of loads."""

    # Days whose conversions or reports change: new conversions, exchange rates (from their day on), spend.
    conversions: frozenset[date] = frozenset()
    clicks: frozenset[date] = frozenset()  # new clicks, and every click on a link that got a new version


def _iso_days(values: list[Any]) -> frozenset[date]:
    days = set()
    for value in values:
        try:
            days.add(date.fromisoformat(str(value)))
        except ValueError:
            continue  # junk text: staging rejects the row, it changes no partition
    return frozenset(days)


def event_days_loaded_after(wh: Warehouse, after: datetime | None, conn: Any = None) -> LoadedEventDays:
    """The days of the events that loads newer than ``after`` (every load when None) brought in.

    Raw timestamps are text with any UTC offset; only the date they are written with is read here, so a caller
    allows one day of margin. Values that do not start with an ISO date are left to staging's quarantine.
    """
    if conn is None:
        with wh.connect() as own:
            return event_days_loaded_after(wh, after, own)
    if not all(wh.table_exists(RAW_SCHEMA, t, conn) for t in ("links", "clicks", "conversions")):
        return LoadedEventDays()
    newer = "1 = 1" if after is None else f"_loaded_at > cast('{after.isoformat()}' as timestamp with time zone)"

    def days(column: str, table: str, where: str) -> frozenset[date]:
        value = f"trim({quote_ident(column)})"
        sql = (
            f"select distinct substr({value}, 1, 10) as day from {qualified(RAW_SCHEMA, table)} "
            f"where {value} like '____-__-__%' and ({where})"
        )
        return _iso_days(list(wh.query_df(sql, conn)["day"]))

    # A new version of a link changes the campaign, creator and channel credited for every click on it.
    relinked = f"trim(link_id) in (select trim(link_id) from {qualified(RAW_SCHEMA, 'links')} where {newer})"
    # A rate of day d converts the revenue of conversions from d on: counting it as a conversion day makes every
    # later day part of the refresh too.
    rate_days = days("rate_date", "fx_rates", newer) if wh.table_exists(RAW_SCHEMA, "fx_rates", conn) else frozenset()
    # Spend of day d changes that day's reports alone (the hourly job rebuilds the reports of its days only).
    spend_days = days("spend_date", "spend", newer) if wh.table_exists(RAW_SCHEMA, "spend", conn) else frozenset()
    return LoadedEventDays(
        conversions=days("converted_at", "conversions", newer) | rate_days | spend_days,
        clicks=days("clicked_at", "clicks", f"{newer} or {relinked}"),
    )


def _scan(f: RawFile, workdir: Path) -> None:
    if f.format == ".parquet":
        # Parquet has no encoding or quoting to get wrong; its checksum is the file's bytes (~0.1 s per 100 MB).
        digest = hashlib.sha256()
        try:
            with open(f.path, "rb") as fh:
                while chunk := fh.read(SCAN_CHUNK):
                    digest.update(chunk)
        except UNREADABLE as exc:
            raise LoadError(f"{f.path}: could not be read: {exc}; {NOTHING_LOADED}") from exc
        f.checksum = digest.hexdigest()
    else:
        _scan_csv(f, workdir)


def _already_loaded(wh: Warehouse, conn: Any, f: RawFile) -> str | None:
    """Where and when the same content was loaded before, if it was."""
    df = wh.query_df(
        f"select source_file, loaded_at from {qualified(RAW_SCHEMA, 'load_log')} "
        f"where table_name = '{f.table}' and content_sha256 = '{f.checksum}' order by loaded_at limit 1",
        conn,
    )
    if df.empty:
        return None
    return f"from {df.loc[0, 'source_file']} at {df.loc[0, 'loaded_at']}"


def load_folder(wh: Warehouse, folder: Path, encoding: str = DEFAULT_ENCODING, force: bool = False) -> LoadResult:
    """Append the raw files of ``folder`` in one transaction, or refuse the whole load with a verdict.

    A file whose content (sha256) was already loaded into its table is skipped with a notice, unless ``force``.
    """
    files = discover(Path(folder), encoding)
    result = LoadResult(loaded_at=datetime.now(UTC))
    with tempfile.TemporaryDirectory(prefix="attribution-load-") as tmp:
        for f in files:
            _scan(f, Path(tmp))  # every file is checked before the warehouse is touched
        for f in files:
            result.warnings.extend(f.warnings)
            extras = sorted(set(extra_columns(f)))
            if extras:
                result.warnings.append(f"{f.path}: ignoring unknown column(s) {', '.join(extras)}")
        for msg in result.warnings:
            log.warning(msg)
        _load_files(wh, files, force, result)
    return result


def _load_files(wh: Warehouse, files: list[RawFile], force: bool, result: LoadResult) -> None:
    with wh.connect() as conn:
        if wh.target.is_duckdb:
            conn.execute("begin transaction")
        try:
            ensure_raw_tables(wh, conn)
            loaded_at = _next_loaded_at(wh, conn)
            result.loaded_at = loaded_at
            this_load: dict[str, Path] = {}
            spark_batches: dict[str, list[Any]] = {}
            log_rows: list[tuple[Any, ...]] = []
            for f in files:
                earlier = _already_loaded(wh, conn, f)
                if earlier is None and f.checksum in this_load:
                    earlier = f"from {this_load[f.checksum]} in this load"
                if earlier is not None and not force:
                    result.notices.append(
                        f"{f.path}: skipped, the same content (sha256 {f.checksum[:12]}…) was already loaded "  # type: ignore[index]
                        f"into raw.{f.table} {earlier}; --force loads it again"
                    )
                    result.skipped.append(f.path)
                    continue
                this_load[f.checksum] = f.path  # type: ignore[index]
                try:
                    if wh.target.is_spark:
                        n = _read_for_spark(f, loaded_at, spark_batches)
                    elif wh.target.is_duckdb:
                        n = _load_duckdb(conn, f, loaded_at)
                    else:
                        n = _load_postgres(conn, f, loaded_at)
                except LoadError:
                    raise
                except Exception as exc:  # the engine refused the file: say where and what, the same on every target
                    try:
                        verdict = _diagnose_csv(f) if f.format != ".parquet" else None
                    except UNREADABLE:  # the file changed under us: keep the engine's words
                        verdict = None
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise LoadError(
                        verdict or f"{f.path}: could not be read into raw.{f.table}: {first}; {NOTHING_LOADED}"
                    ) from exc
                if f.format == ".parquet" and _parquet_nul_rows(wh, conn, f, loaded_at):
                    msg = _nul_warning(f, None)
                    log.warning(msg)
                    result.warnings.append(msg)
                if wh.target.is_spark:
                    log_rows.append((loaded_at, f.table, str(f.path), n, f.checksum))
                    result.rows[f.table] = result.rows.get(f.table, 0) + n
                    result.files.append(f.path)
                    continue
                wh.execute(
                    f"insert into {qualified(RAW_SCHEMA, 'load_log')} "
                    "(loaded_at, table_name, source_file, row_count, content_sha256) values "
                    f"(cast('{loaded_at.isoformat()}' as timestamp with time zone), '{f.table}', "
                    f"'{_sql_str(str(f.path))}', {n}, '{f.checksum}')",
                    conn,
                )
                result.rows[f.table] = result.rows.get(f.table, 0) + n
                result.files.append(f.path)
            if wh.target.is_spark:
                _append_spark(wh, conn, spark_batches, log_rows)
            elif wh.target.is_duckdb:
                conn.execute("commit")
            else:
                # Staging plans its scans of raw from statistics: refresh them with the new rows.
                for table in result.rows:
                    wh.execute(f"analyze {qualified(RAW_SCHEMA, table)}", conn)
        except BaseException:
            if wh.target.is_duckdb:
                conn.execute("rollback")
            raise


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def _select_list(f: RawFile, loaded_at: datetime, cast_text: bool) -> str:
    cols = [f"cast({quote_ident(c)} as varchar)" if cast_text else quote_ident(c) for c in RAW_COLUMNS[f.table]]
    cols.append(f"cast('{loaded_at.isoformat()}' as timestamp with time zone)")
    cols.append(f"'{_sql_str(str(f.path))}'")
    return ", ".join(cols)


def _load_duckdb(conn: Any, f: RawFile, loaded_at: datetime) -> int:
    path = _sql_str(str(f.source))
    if f.format == ".parquet":
        source = f"read_parquet('{path}')"
    else:
        # No sniffing: the dialect is fixed and the columns are the header's, by position, so a file is read the
        # same way whatever its content. strict_mode refuses ragged rows and unterminated quotes while reading
        # (no extra pass); every value stays text, exactly as delivered.
        columns = ", ".join(f"'{_sql_str(c)}': 'VARCHAR'" for c in f.load_columns)
        source = (
            f"read_csv('{path}', header = true, auto_detect = false, columns = {{{columns}}}, delim = ',', "
            "quote = '\"', escape = '\"', max_line_size = 4000000, strict_mode = true)"
        )
    insert_cols = ", ".join(quote_ident(c) for c in (*RAW_COLUMNS[f.table], *METADATA_COLUMNS))
    row = conn.execute(
        f"insert into {qualified(RAW_SCHEMA, f.table)} ({insert_cols}) "
        f"select {_select_list(f, loaded_at, cast_text=True)} from {source}"
    ).fetchone()
    return int(row[0]) if row else 0


def _load_postgres(conn: Any, f: RawFile, loaded_at: datetime) -> int:
    temp = f"_load_{f.table}"
    with conn.cursor() as cur:
        cur.execute(f"drop table if exists {quote_ident(temp)}")
        cur.execute(
            f"create temporary table {quote_ident(temp)} ("
            + ", ".join(f"{quote_ident(c)} text" for c in f.load_columns)
            + ") on commit drop"
        )
        copy_sql = f"copy {quote_ident(temp)} from stdin with (format csv, header {{header}})"
        if f.format == ".parquet":
            for chunk in _parquet_as_csv_chunks(f.source, f.nul_rows, RAW_COLUMNS[f.table]):
                cur.copy_expert(copy_sql.format(header="false"), chunk)
        else:
            with _open_bytes(f.source) as fh:
                cur.copy_expert(copy_sql.format(header="true"), fh)
        insert_cols = ", ".join(quote_ident(c) for c in (*RAW_COLUMNS[f.table], *METADATA_COLUMNS))
        cur.execute(
            f"insert into {qualified(RAW_SCHEMA, f.table)} ({insert_cols}) "
            f"select {_select_list(f, loaded_at, cast_text=False)} from {quote_ident(temp)}"
        )
        n = cur.rowcount
        cur.execute(f"drop table {quote_ident(temp)}")
    return int(n)


def _read_for_spark(f: RawFile, loaded_at: datetime, batches: dict[str, list[Any]]) -> int:
    """Read ``f`` on the driver into an Arrow table of the raw table's columns (every value text, as delivered) and
    keep it in ``batches`` until every file of the load is read. The dialect is DuckDB's and PostgreSQL's: a fixed
    header, ``"`` quoting and escaping, an unquoted empty field is NULL and a quoted one the empty string."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = list(f.load_columns)
    read = pa_csv.ReadOptions(
        column_names=names, skip_rows=0 if f.format == ".parquet" else 1, block_size=2 * MAX_LINE_BYTES
    )
    convert = pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        include_columns=list(RAW_COLUMNS[f.table]),
    )
    parse = pa_csv.ParseOptions(newlines_in_values=True, double_quote=True)
    if f.format == ".parquet":
        # The same text the PostgreSQL load receives: every column cast to text, NUL removed and counted.
        parts = [
            pa_csv.read_csv(chunk, read_options=read, parse_options=parse, convert_options=convert)
            for chunk in _parquet_as_csv_chunks(f.source, f.nul_rows, RAW_COLUMNS[f.table])
        ]
        table = pa.concat_tables(parts) if parts else pa.table({c: pa.array([], pa.string()) for c in names})
    else:
        with _open_bytes(f.source) as fh:
            table = pa_csv.read_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
    table = table.select(list(RAW_COLUMNS[f.table]))
    n = table.num_rows
    table = table.append_column("_loaded_at", pa.array([loaded_at] * n, pa.timestamp("us", tz="UTC")))
    table = table.append_column("_source_file", pa.array([str(f.path)] * n, pa.string()))
    batches.setdefault(f.table, []).append(table)
    return n


def _append_spark(wh: Warehouse, spark: Any, batches: dict[str, list[Any]], log_rows: list[tuple[Any, ...]]) -> None:
    """Append the load's tables and its load_log rows, once every file has been read."""
    import pyarrow as pa

    from warehouse.spark import frame_to_spark

    for table, parts in batches.items():
        frame_to_spark(spark, pa.concat_tables(parts)).write.insertInto(f"{RAW_SCHEMA}.{table}")
    if log_rows:
        loaded_at, tables, files, counts, checksums = zip(*log_rows, strict=True)
        log_table = pa.table(
            {
                "loaded_at": pa.array(loaded_at, pa.timestamp("us", tz="UTC")),
                "table_name": pa.array(tables, pa.string()),
                "source_file": pa.array(files, pa.string()),
                "row_count": pa.array(counts, pa.int64()),
                "content_sha256": pa.array(checksums, pa.string()),
            }
        )
        frame_to_spark(spark, log_table).write.insertInto(f"{RAW_SCHEMA}.load_log")


def _parquet_nul_rows(wh: Warehouse, conn: Any, f: RawFile, loaded_at: datetime) -> dict[str, int]:
    """Remove NUL from the rows just loaded from a Parquet file, counting the affected rows per column.

    On PostgreSQL the text never holds NUL (it is removed from each batch before COPY, see
    :func:`_parquet_as_csv_chunks`), so the count is read there; on DuckDB this costs one columnar scan of the
    new rows.
    """
    where = (
        f"_loaded_at = cast('{loaded_at.isoformat()}' as timestamp with time zone) "
        f"and _source_file = '{_sql_str(str(f.path))}'"
    )
    if not wh.target.is_duckdb:
        return dict(f.nul_rows)
    cols = RAW_COLUMNS[f.table]
    counts = conn.execute(
        "select "
        + ", ".join(f"count(*) filter (where contains({quote_ident(c)}, chr(0)))" for c in cols)
        + f" from {qualified(RAW_SCHEMA, f.table)} where {where}"
    ).fetchone()
    hit = {c: int(n) for c, n in zip(cols, counts, strict=True) if n}
    f.nul_rows = Counter(hit)
    if hit:
        sets = ", ".join(f"{quote_ident(c)} = replace({quote_ident(c)}, chr(0), '')" for c in hit)
        conn.execute(f"update {qualified(RAW_SCHEMA, f.table)} set {sets} where {where}")
    return hit


def _parquet_as_csv_chunks(
    path: Path, nul: Counter[str], wanted_columns: tuple[str, ...] = (), batch_rows: int = 500_000
):
    """A Parquet file as headerless CSV chunks for COPY, every column as text and NUL removed (counted in
    ``nul`` per wanted column): a vectorised match per batch, cheap beside the CSV writing."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    wanted = set(wanted_columns)
    for batch in parquet.iter_batches(batch_size=batch_rows):
        table = pa.Table.from_batches([batch])
        names = [f"_c{i}" for i in range(table.num_columns)]  # positional: repeated names stay apart
        table = table.rename_columns(names).cast(pa.schema([pa.field(n, pa.string()) for n in names]))
        arrays = []
        for original, column in zip(batch.schema.names, table.columns, strict=True):
            hits = pc.sum(pc.match_substring(column, "\x00")).as_py() or 0
            if hits and original in wanted:
                nul[original] += hits
                column = pc.replace_substring(column, "\x00", "")
            arrays.append(column)
        table = pa.table(arrays, names=names)
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
        buf.seek(0)
        yield buf
