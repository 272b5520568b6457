"""Per-group pandas steps on Spark: the Python assets' pure functions run on the executors, one group at a time.

``groupBy(key).applyInArrow`` (or ``cogroup(...).applyInArrow`` for two inputs) hands each group to a worker as
an Arrow table. The worker turns it into the frame the driver path would have read (:func:`warehouse.spark.
arrow_to_frame`, the one dtype rule), calls the function and hands back Arrow in the destination table's schema.
Arrow rather than ``applyInPandas``: Spark's own pandas conversion turns a nullable integer into float and a
timestamp into a zone-less one, which the functions would then see differently from the driver path.

The output schema is the destination table's (``spark.table(...).schema``) when it exists, so no column is
typed twice by hand; before the first write it is the schema the driver path would create, taken from the
function's result on one group computed on the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any

import pandas as pd

from warehouse.spark import arrow_to_frame, frame_to_arrow, frame_to_spark, spark_to_frame

GroupFunction = Callable[..., pd.DataFrame]


def output_schema(spark: Any, table: str, func: GroupFunction, sources: Sequence[Any], key: str) -> Any:
    """Spark schema of ``func``'s rows: ``table``'s when it exists, else the driver path's for one sample group
    (the first ``key`` value; an empty frame per source when there is none)."""
    if spark.catalog.tableExists(table):
        return spark.table(table).schema
    from pyspark.sql import functions as F

    keys = reduce(lambda a, b: a.union(b), [s.select(key) for s in sources])
    first = keys.where(F.col(key).isNotNull()).agg(F.min(key)).collect()[0][0]
    frames = [spark_to_frame(s.where(F.col(key) == F.lit(first)) if first is not None else s.limit(0)) for s in sources]
    return frame_to_spark(spark, func(*frames)).schema


def map_groups(spark: Any, func: GroupFunction, sources: Sequence[Any], key: str, schema: Any) -> Any:
    """``func`` applied to each ``key`` group of ``sources`` (one, or two cogrouped: a key present in only one
    source hands the function an empty frame for the other), its results as one DataFrame of ``schema``."""
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema, timezone="UTC")

    # Spark reads the arity of the function it is given: one table per group, or the two sides of a cogroup.
    def one(table: Any) -> Any:
        return frame_to_arrow(func(arrow_to_frame(table)), arrow_schema)

    def two(left: Any, right: Any) -> Any:
        return frame_to_arrow(func(arrow_to_frame(left), arrow_to_frame(right)), arrow_schema)

    if len(sources) == 1:
        return sources[0].groupBy(key).applyInArrow(one, schema)
    if len(sources) == 2:
        left, right = sources
        return left.groupBy(key).cogroup(right.groupBy(key)).applyInArrow(two, schema)
    raise ValueError(f"map_groups: one or two sources can be grouped, got {len(sources)}")
