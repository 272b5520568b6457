{#- incremental_config(unique_key, on_schema_change, partition_by=none, indexes=none): the incremental materialisation
    of a model, per engine, in one place. Models call config(**incremental_config(...)).
    - DuckDB and PostgreSQL: delete+insert on unique_key (a redelivered key replaces the stored row).
    - PostgreSQL also builds `indexes` (dbt's index configs) with the table: a row store reads every column of
      every row it scans, so an incremental run over a few new rows finds them, and the rows it replaces, through
      indexes. A table built before its indexes were declared gets them at its next full refresh. DuckDB's
      columnar scans need none.
    - Spark (Parquet tables: no DELETE, no MERGE without Delta/Iceberg jars): a model partitioned by a date column
      overwrites the partitions its run produces (insert_overwrite, dynamic partition overwrite); a model without
      one (staging, whose incremental runs read only the newest loads) is rebuilt as a table on every run. -#}
{% macro incremental_config(unique_key, on_schema_change, partition_by=none, indexes=none) -%}
    {%- if target.type == 'spark' -%}
        {%- if partition_by -%}
            {{- return({'materialized': 'incremental', 'incremental_strategy': 'insert_overwrite',
                        'partition_by': [partition_by], 'file_format': 'parquet',
                        'on_schema_change': on_schema_change}) -}}
        {%- endif -%}
        {{- return({'materialized': 'table', 'file_format': 'parquet'}) -}}
    {%- endif -%}
    {%- set config = {'materialized': 'incremental', 'incremental_strategy': 'delete+insert', 'unique_key': unique_key,
                      'on_schema_change': on_schema_change} -%}
    {%- do config.update(postgres_indexes(indexes)) -%}
    {{- return(config) -}}
{%- endmacro %}


{#- postgres_indexes(indexes): the config that gives a model dbt's `indexes` on PostgreSQL only: its row store reads
    every column of every row a lookup scans, so a model that small runs look rows up in is indexed there. DuckDB's
    columnar scans need none (and would build ART indexes); Spark has none. -#}
{% macro postgres_indexes(indexes) -%}
    {{- return({'indexes': indexes} if target.type == 'postgres' and indexes else {}) -}}
{%- endmacro %}


{#- incremental_deletes_rows(): whether a partitioned model's pre-hook deletes its window before the insert. Spark's
    Parquet tables cannot delete rows; the partitions a run produces are overwritten whole instead. -#}
{% macro incremental_deletes_rows() -%}
    {{- return(is_incremental() and target.type != 'spark') -}}
{%- endmacro %}


{#- should_full_refresh(): dbt's own (the model's full_refresh config, else --full-refresh), overridden to add one
    case: a model configured rebuild_after_identity_refit is rebuilt whole when the identities were re-fitted since
    its build (int_event_identities: a re-fit may move any event, the hourly merges only events they name). -#}
{% macro should_full_refresh() %}
    {%- set config_full_refresh = config.get('full_refresh') -%}
    {%- if config_full_refresh is none -%}
        {%- set config_full_refresh = flags.FULL_REFRESH -%}
    {%- endif -%}
    {%- if not config_full_refresh and config.get('rebuild_after_identity_refit') -%}
        {%- set config_full_refresh = identity_refit_since_build(this) -%}
    {%- endif -%}
    {%- do return(config_full_refresh) -%}
{% endmacro %}
