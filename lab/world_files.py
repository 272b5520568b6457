"""Write a synthetic world (see `lab.synthetic`) to files.

Raw tables (`links`, `clicks`, `conversions`, `fx_rates`, `spend`) follow the raw contract: every column is text and a
missing value is the empty string, in `csv`, `csv.gz` or `parquet`. The ground truth (`truth_clicks`,
`truth_conversions`) is always written as typed Parquet. Big tables are written in batches so a 10-million-row
world does not need a second copy in memory.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

RAW_TABLES = ("links", "clicks", "conversions", "fx_rates", "spend")
TRUTH_TABLES = ("truth_clicks", "truth_conversions")
FORMATS = ("csv", "csv.gz", "parquet")
BATCH_ROWS = 1_000_000


def write_world(world: dict[str, pd.DataFrame], out_dir: Path, fmt: str = "csv") -> dict[str, Path]:
    """Write the raw tables as `<name>.<fmt>` and the truth as `<name>.parquet` in out_dir; return the paths."""
    if fmt not in FORMATS:
        raise ValueError(f"write_world: format {fmt!r} is not one of {', '.join(FORMATS)}")
    missing = [name for name in (*RAW_TABLES, *TRUTH_TABLES) if name not in world]
    if missing:
        raise ValueError(f"write_world: the world has no table(s) {', '.join(missing)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in RAW_TABLES:
        paths[name] = out_dir / f"{name}.{fmt}"
        _write_raw(world[name], paths[name], fmt)
    for name in TRUTH_TABLES:
        paths[name] = out_dir / f"{name}.parquet"
        world[name].to_parquet(paths[name], index=False)
    return paths


def _text_batch(frame: pd.DataFrame) -> pa.Table:
    """All columns as non-null strings ('' for missing), whatever their pandas dtype."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        columns.append(column.fill_null(""))
    return pa.table(columns, names=table.column_names)


def _write_raw(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    schema = pa.schema([(str(c), pa.string()) for c in frame.columns])
    batches = (_text_batch(frame.iloc[lo : lo + BATCH_ROWS]) for lo in range(0, max(len(frame), 1), BATCH_ROWS))
    if fmt == "parquet":
        with pq.ParquetWriter(path, schema) as writer:
            for batch in batches:
                writer.write_table(batch, row_group_size=BATCH_ROWS)
        return
    with open(path, "wb") as raw:
        # zlib level 1 is several times faster than arrow's gzip default for ~5% more bytes; mtime=0 keeps the
        # file identical across runs
        sink = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) if fmt == "csv.gz" else raw
        with sink, pacsv.CSVWriter(sink, schema) as writer:
            for batch in batches:
                writer.write_table(batch)
