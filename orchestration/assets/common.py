"""Small helpers shared by the Python assets: partition windows and metadata."""

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import dagster as dg
import pandas as pd

from orchestration.assets.keys import INT_IDENTITIES, MATCH_MODEL
from orchestration.partitions import LEFT_UNTIL_DAILY, REPORTS_BY_WINDOW, REPORTS_TAG

PYTHON_SCHEMA = "intermediate"
# Who answers for the Python assets in the UI (dbt assets take theirs from the models' meta).
OWNERS = ["team:analytics-engineering"]


def partition_dates(context: dg.AssetExecutionContext) -> tuple[date, date] | None:
    """[start, end) conversion dates of the run's partition range, or None for an unpartitioned run."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def date_where(column: str, window: tuple[date, date] | None) -> str:
    if window is None:
        return "1 = 1"
    start, end = window
    return f"{column} >= cast('{start.isoformat()}' as date) and {column} < cast('{end.isoformat()}' as date)"


def refresh_scope_metadata(context: dg.AssetExecutionContext) -> dict[str, dg.MetadataValue]:
    """On a run that refreshes only its days (the hourly job), what its tables still hold as of the last daily job:
    an operator or a BI reader sees on each materialization which parts wait for the next re-fit, and since when.
    Empty for every other run."""
    if context.run.tags.get(REPORTS_TAG) != REPORTS_BY_WINDOW:
        return {}
    metadata = {"attribution/left_until_daily_job": dg.MetadataValue.md("\n".join(f"- {x}" for x in LEFT_UNTIL_DAILY))}
    for name, key in (("identities", INT_IDENTITIES), ("match_model", MATCH_MODEL)):
        event = context.instance.get_latest_materialization_event(key)
        if event is not None:
            metadata[f"attribution/{name}_as_of"] = dg.MetadataValue.timestamp(event.timestamp)
    return metadata


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _cell(value: object) -> object:
    """A JSON-friendly cell: numpy scalars become Python numbers, missing values None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        return value.item()  # type: ignore[no-any-return]
    return value if isinstance(value, int | float | bool | str) else str(value)


def table_metadata(df: pd.DataFrame, max_rows: int = 50) -> dg.MetadataValue:
    """A frame as a native Dagster table (sortable in the UI, with a column schema), at most ``max_rows`` rows."""
    head = df.head(max_rows)
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), _column_type(head[c])) for c in head.columns])
    records = [dg.TableRecord({str(c): _cell(v) for c, v in row.items()}) for row in head.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=schema)


def png_metadata(fig: object) -> dg.MetadataValue:
    """A matplotlib figure as an inline image in the Dagster UI."""
    import base64

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
    encoded = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{encoded})")


class PhaseTimer:
    """Wall seconds per named phase of an asset, for its metadata: where a slow materialisation spends its time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + time.perf_counter() - started, 2)
