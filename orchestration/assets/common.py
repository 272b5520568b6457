"""Small helpers shared by the Python assets: partition windows and metadata."""

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import dagster as dg
import pandas as pd

PYTHON_SCHEMA = "intermediate"


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


def table_metadata(df: pd.DataFrame, max_rows: int = 20) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(max_rows).to_markdown(index=False) if len(df) else "_(empty)_")


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
