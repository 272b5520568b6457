"""The `attribution` command line: thin commands over the warehouse client, the Dagster code location and the lab."""
