"""Publishing the marts for BI (dbt_project/macros/publish.sql): the operation's arguments and, on DuckDB, the
snapshot file it writes. Its own module, so that tests publish as the pipeline does without loading the assets."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from warehouse.target import PUBLISHED_SCHEMA, Target


@contextmanager
def publish_marts_args(target: Target, run_id: str) -> Iterator[dict[str, Any]]:
    """The --args of `dbt run-operation publish_marts` for ``target``; on DuckDB the new snapshot file is swapped in
    when the operation succeeds (the body of the with-block)."""
    if not target.is_duckdb:
        yield {"schema": PUBLISHED_SCHEMA}
        return
    published = target.published_duckdb_path
    # A new file per run under a temporary name: the published file is never opened for writing, so a reader
    # holding it open neither blocks the run nor sees it change.
    temporary = published.with_name(f"{published.name}.{run_id[:8]}.tmp")
    for leftover in published.parent.glob(f"{published.name}.*.tmp*"):  # from runs that died mid-copy
        leftover.unlink(missing_ok=True)
    # The previous snapshot is the base the run's changes are applied to (publish_marts decides whether it is
    # usable): copying a file is far cheaper than copying every report row by row.
    copied = published.exists()
    if copied:
        shutil.copyfile(published, temporary)
    yield {"path": str(temporary), "copied": copied}
    os.replace(temporary, published)
