"""The warehouse client: target selection, connections and reads/writes, the raw loader and its backup.

No Dagster and no dbt here: the command line, the Dagster code location and the tests all use it."""
