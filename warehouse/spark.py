"""The Spark target's session and its dialect bridge: the only module that imports pyspark.

One SparkSession per process, shared by everything that runs in it: the warehouse client, the loader and dbt (which
the pipeline runs in-process on this target, see ``orchestration/resources.py``). dbt-spark's session method calls
``SparkSession.builder.getOrCreate()`` and so picks up the session created here. The embedded Derby metastore admits
one JVM at a time: a second process on the same folder fails with ``XSDB6``.
"""

from __future__ import annotations

import atexit
import re
import threading
from typing import Any

import pandas as pd
import pyarrow as pa

from warehouse.target import SparkSettings

_LOCK = threading.Lock()
_SESSION: Any = None

# Portable type names the Python side writes in casts and DDL (DuckDB and PostgreSQL both accept them), and
# Spark's names for them. Spark's TIMESTAMP is an instant, like timestamp with time zone elsewhere.
_TYPE_NAMES = (
    (re.compile(r"\btimestamp\s+with\s+time\s+zone\b", re.IGNORECASE), "timestamp"),
    (re.compile(r"\bdouble\s+precision\b", re.IGNORECASE), "double"),
    (re.compile(r"\bas\s+text\b", re.IGNORECASE), "as string"),
    (re.compile(r"\bas\s+varchar\b", re.IGNORECASE), "as string"),
    # Spark's bare decimal is decimal(10, 0), which rounds every figure to an integer; elsewhere it keeps digits.
    (re.compile(r"\bas\s+numeric\b(?!\s*\()", re.IGNORECASE), "as decimal(38, 9)"),
)


def session(settings: SparkSettings) -> Any:
    """The process's SparkSession, created on first use with Hive support (dbt-spark needs it) and ``settings``."""
    global _SESSION
    with _LOCK:
        if _SESSION is None or _SESSION._jsc is None:
            from pyspark.sql import SparkSession

            settings.folder.mkdir(parents=True, exist_ok=True)
            builder = SparkSession.builder.appName("link-attribution").enableHiveSupport()
            for key, value in settings.conf().items():
                builder = builder.config(key, value)
            _SESSION = builder.getOrCreate()
            _SESSION.sparkContext.setLogLevel("ERROR")
            # The run's process owns the session: stopped (its metastore released cleanly) when the process ends.
            atexit.register(stop)
        return _SESSION


def stop() -> None:
    """Stop the process's session (and its JVM's hold on the metastore), if one was started."""
    global _SESSION
    with _LOCK:
        if _SESSION is not None:
            _SESSION.stop()
            _SESSION = None


def to_spark_sql(sql: str) -> str:
    """``sql`` in Spark's dialect: double-quoted identifiers become back-quoted (Spark reads "x" as a string
    literal), portable type names become Spark's. Single-quoted literals and comments are left untouched."""
    out: list[str] = []
    for i, part in enumerate(re.split(r"('(?:[^']|'')*'|--[^\n]*|/\*.*?\*/)", sql, flags=re.DOTALL)):
        if i % 2:  # a single-quoted literal or a comment
            out.append(part)
            continue
        part = part.replace("`", "``").replace('"', "`")
        for pattern, name in _TYPE_NAMES:
            part = pattern.sub(name, part)
        out.append(part)
    return "".join(out)


def _spark_ready(table: pa.Table) -> pa.Table:
    """Arrow types Spark's reader takes: all-null columns as string, large strings as strings, nanosecond
    timestamps as microseconds (Spark's precision)."""
    fields = []
    for field in table.schema:
        t = field.type
        if pa.types.is_null(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_timestamp(t) and t.unit == "ns":
            t = pa.timestamp("us", tz=t.tz)
        elif pa.types.is_dictionary(t):
            t = t.value_type
        fields.append(pa.field(field.name, t))
    return table.cast(pa.schema(fields), safe=False)


def frame_to_arrow(df: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """``df`` as the Arrow table Spark reads: with ``schema`` (a destination's columns, in its order) cast to it,
    otherwise typed from the frame's dtypes the way Spark's reader takes them."""
    if schema is None:
        return _spark_ready(pa.Table.from_pandas(df, preserve_index=False))
    return pa.Table.from_pandas(df[list(schema.names)], schema=schema, preserve_index=False, safe=False)


def frame_to_spark(spark: Any, df: pd.DataFrame | pa.Table) -> Any:
    table = _spark_ready(df) if isinstance(df, pa.Table) else frame_to_arrow(df)
    return spark.createDataFrame(table)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow as the frame the Python steps expect (the PostgreSQL client's dtypes): nullable Int64 and boolean,
    float64 (decimals too), datetime64, datetime.date and text as object with None. The one rule for every frame
    that leaves Spark: a driver-side result (:func:`spark_to_frame`) and a group handed to a per-group step
    (``warehouse/spark_groups.py``) get the same dtypes."""
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        t = column.type
        if pa.types.is_integer(t):
            columns[name] = pd.Series(column.cast(pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
        elif pa.types.is_boolean(t):
            columns[name] = pd.Series(column.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get))
        elif pa.types.is_decimal(t) or pa.types.is_floating(t):
            columns[name] = pd.Series(column.cast(pa.float64()).to_pandas())
        elif pa.types.is_timestamp(t) or pa.types.is_date(t):
            columns[name] = pd.Series(column.to_pandas())
        else:
            columns[name] = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
    if not columns:
        return pd.DataFrame(index=range(table.num_rows))
    frame = pd.concat(list(columns.values()), axis=1, keys=range(len(columns)))
    frame.columns = table.column_names
    return frame


def spark_to_frame(sdf: Any) -> pd.DataFrame:
    """A Spark result collected to the driver as a frame (dtypes: :func:`arrow_to_frame`)."""
    return arrow_to_frame(sdf.toArrow())
