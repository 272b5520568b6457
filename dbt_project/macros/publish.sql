{#- ---------------------------------------------------------------------------------------------------------
    Publishing the marts for BI: the last step of every run (`dbt run-operation publish_marts`, driven by the
    Dagster asset published/marts once every mart of the run is built). Readers query the published copy, never
    the tables dbt is rebuilding, so they see the previous run's marts or this run's, never a mix, and the
    pipeline never waits on them.

    What is copied: every mart build records what it rewrote in <intermediate>.dbt_publish_changes (pre-hook
    marts_record_publish_change): the days of a mart updated in place by day (meta published_by_day, macro
    marts_by_day_config), or the whole table. The snapshot holds publish_state: when it was published and the
    newest change it includes. A publish replaces, in the previous snapshot, the recorded days of the marts by day
    (and every row of a key those days now hold) and the marts rebuilt whole, and keeps the rest: the hourly job
    copies its few days, not every report. It copies every mart (a full publish) when there is no usable previous
    snapshot, when a mart by day was rebuilt whole (the daily job, full runs), or when the marts' tables or
    columns differ from the snapshot's.

    - DuckDB: the snapshot is a new database file (`path`, a temporary name beside the published file): a copy of
      the published file that the changes are applied to, or a file the marts are copied into whole. The Dagster
      asset then swaps it in with an atomic rename. A reader holding the old file open keeps reading the old
      snapshot; the pipeline never opens the published file for writing.
    - PostgreSQL: a full publish copies every mart, with the indexes its model declares (the day and key of the
      marts by day, which BI filters by and the publish of changes deletes by), into schema <published>__next,
      granted to the BI role, and swaps it in by renaming schemas in one transaction; the previous snapshot stays
      as <published>__old until the next full publish drops it. Changes are applied to the published tables in
      one transaction by delete and insert. Neither takes a lock that waits for a reader's running query, and
      readers see the old rows until the commit.

    The marts are the models of the marts folder (from the dbt graph, never listed by name), so a new or
    reshaped report is published with the rest.
--------------------------------------------------------------------------------------------------------- -#}

{#- publish_marts_relations(): the built relation of every model in the marts folder; an error names a mart
    that was never built (publishing without it would hide that it is missing). -#}
{% macro publish_marts_relations() -%}
    {%- set relations = [] -%}
    {%- for node in graph.nodes.values() | sort(attribute='name') -%}
        {%- if node.resource_type == 'model' and node.fqn[1] == 'marts' -%}
            {%- set relation = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
            {%- if relation is none -%}
                {{ exceptions.raise_compiler_error(
                    "publish_marts: mart " ~ node.schema ~ "." ~ node.alias ~ " does not exist; build the marts before publishing them") }}
            {%- endif -%}
            {%- do relations.append(relation) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not relations -%}
        {{ exceptions.raise_compiler_error("publish_marts: the marts folder has no models") }}
    {%- endif -%}
    {{- return(relations) -}}
{%- endmacro %}


{#- publish_changes_relation(database): where mart builds record their changes (beside the intermediate models:
    pipeline state, which BI never reads). -#}
{% macro publish_changes_relation(database) -%}
    {{- return(api.Relation.create(database=database, schema=generate_schema_name('intermediate', none) | trim,
                                   identifier='dbt_publish_changes')) -}}
{%- endmacro %}


{#- create_publish_changes(): on-run-start hook, so that the marts' pre-hooks, which run on several threads, never
    race to create the table. Spark publishes every mart whole and records nothing. -#}
{% macro create_publish_changes() -%}
    {%- if target.type != 'spark' -%}
        {%- set changes = publish_changes_relation(target.database) -%}
        create schema if not exists {{ changes.schema }};
        create table if not exists {{ changes }} (
            model_name {{ dbt.type_string() }},
            days_from date,
            days_to date,
            changed_at timestamp with time zone
        )
    {%- endif -%}
{%- endmacro %}


{#- marts_record_publish_change(): pre-hook of every mart (dbt_project.yml). A pre-hook, because only before the
    build does is_incremental() say what the build rewrites: the partition window's days of a mart by day updated
    in place (marts_delete_partition_window deletes the same days), the whole table otherwise. On PostgreSQL the
    row commits with the build; a row left by a build that failed only makes the next publish copy more. -#}
{% macro marts_record_publish_change() -%}
    {%- if target.type == 'spark' -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set by_day = (config.get('meta') or {}).get('published_by_day') and incremental_deletes_rows() -%}
    {%- set days_from = marts_partition_date('partition_start') if by_day else none -%}
    {%- set days_to = marts_partition_date('partition_end') if by_day else none -%}
    insert into {{ publish_changes_relation(this.database) }} (model_name, days_from, days_to, changed_at)
    values (
        '{{ this.identifier }}',
        {{ "cast('" ~ days_from ~ "' as date)" if days_from else 'null' }},
        {{ "cast('" ~ days_to ~ "' as date)" if days_to else 'null' }},
        current_timestamp
    )
{%- endmacro %}


{% macro publish_marts(path=none, schema=none, copied=false) -%}
    {%- if schema is not none and not modules.re.match('^[a-z_][a-z0-9_]*$', schema | string) -%}
        {{ exceptions.raise_compiler_error("publish_marts: schema must be a plain SQL identifier, got '" ~ schema ~ "'") }}
    {%- endif -%}
    {%- set relations = publish_marts_relations() -%}
    {{- return(adapter.dispatch('publish_marts', 'link_attribution')(relations, path, schema, copied)) -}}
{%- endmacro %}


{% macro default__publish_marts(relations, path, schema, copied) -%}
    {{ exceptions.raise_compiler_error("publish_marts: no publishing for adapter " ~ adapter.type()) }}
{%- endmacro %}


{#- publish_columns(catalog, schema): table name -> its column names in order, from information_schema. -#}
{% macro publish_columns(catalog, schema) -%}
    {%- set rows = run_query(
        "select table_name, column_name from information_schema.columns where table_catalog = '" ~ catalog
        ~ "' and table_schema = '" ~ schema ~ "' order by table_name, ordinal_position") -%}
    {%- set columns = {} -%}
    {%- for row in rows -%}
        {%- do columns.setdefault(row[0], []).append(row[1]) -%}
    {%- endfor -%}
    {{- return(columns) -}}
{%- endmacro %}


{#- publish_plan(relations, snapshot, catalog): what a publish into `snapshot` (the previous snapshot's schema, in
    database `catalog`; none when there is none) copies. Returns the previous snapshot's change mark (none without
    one), the mark the new snapshot records, and per mart none (keep the snapshot's table), 'whole', or the list of
    [days_from, days_to] windows rebuilt since the mark; `full` is true when every mart is copied whole. -#}
{% macro publish_plan(relations, snapshot, catalog) -%}
    {%- set changes = publish_changes_relation(relations[0].database) -%}
    {%- set has_changes = adapter.get_relation(database=changes.database, schema=changes.schema,
                                               identifier=changes.identifier) is not none -%}
    {%- set snapshot_columns = publish_columns(catalog, snapshot) if snapshot else {} -%}
    {%- set previous_mark = none -%}
    {%- if 'publish_state' in snapshot_columns -%}
        {%- set previous_mark = run_query("select cast(max(changes_through) as " ~ dbt.type_string() ~ ") from "
                                          ~ catalog ~ "." ~ snapshot ~ ".publish_state").columns[0].values()[0] -%}
    {%- endif -%}
    {%- set nodes = {} -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.fqn[1] == 'marts' -%}
        {%- do nodes.update({node.alias: node}) -%}
    {%- endfor -%}
    {%- set plan = {'previous_mark': previous_mark, 'mark': previous_mark, 'marts': {}, 'nodes': nodes, 'full': true} -%}
    {%- set rows = [] -%}
    {%- if has_changes -%}
        {%- set rows = run_query(
            "select model_name, cast(days_from as " ~ dbt.type_string() ~ "), cast(days_to as "
            ~ dbt.type_string() ~ "), cast(changed_at as " ~ dbt.type_string() ~ ") from " ~ changes
            ~ (" where changed_at > " ~ int_timestamptz_literal(previous_mark) if previous_mark else "")
            ~ " order by changed_at") -%}
        {%- for row in rows -%}
            {%- do plan.update({'mark': row[3]}) -%}
        {%- endfor -%}
    {%- endif -%}
    {#- A namespace: a plain variable set inside a loop would not outlive it. -#}
    {%- set ns = namespace(usable=has_changes and previous_mark is not none) -%}
    {%- set warehouse_columns = publish_columns(relations[0].database, relations[0].schema) -%}
    {%- for relation in relations -%}
        {%- set name = relation.identifier -%}
        {%- set windows = [] -%}
        {%- for row in rows if row[0] == name and [row[1], row[2]] not in windows -%}
            {%- do windows.append([row[1], row[2]]) -%}
        {%- endfor -%}
        {%- set by_day = (nodes[name].config.meta or {}).get('published_by_day') -%}
        {%- set whole = [none, none] in windows -%}
        {%- if snapshot_columns.get(name) != warehouse_columns.get(name) or (whole and by_day) -%}
            {%- set ns.usable = false -%}
        {%- endif -%}
        {%- do plan.marts.update({name: ('whole' if whole or not by_day else windows) if windows else none}) -%}
    {%- endfor -%}
    {%- for name in snapshot_columns if name != 'publish_state' and name not in plan.marts -%}
        {%- set ns.usable = false -%}  {#- a mart no longer built: only a full publish drops it -#}
    {%- endfor -%}
    {%- do plan.update({'full': not ns.usable}) -%}
    {{- return(plan) -}}
{%- endmacro %}


{#- publish_window_filter(column, windows): the rows of the recorded windows (a bound left null is open). -#}
{% macro publish_window_filter(column, windows) -%}
    (
    {%- for window in windows %}
        {% if not loop.first %}or {% endif %}(1 = 1
            {%- if window[0] %} and {{ column }} >= cast('{{ window[0] }}' as date){% endif %}
            {%- if window[1] %} and {{ column }} < cast('{{ window[1] }}' as date){% endif %})
    {%- endfor %}
    )
{%- endmacro %}


{#- publish_changed_days_sql(relation, target_table, windows, node): replaces the windows' rows of target_table
    with the mart's (`node`: its dbt graph node), and removes every row of a key the mart now holds in those days
    (a conversion whose date moved into them: delete+insert on the key removed it from its old day in the mart
    too). Two deletes, not one with an `or`: PostgreSQL cannot turn an `in` under an `or` into a join, and over the
    credits at L it ran for minutes as a subplan rescanned per row. -#}
{% macro publish_changed_days_sql(relation, target_table, windows, node) -%}
    {%- set day = node.config.meta.published_by_day -%}
    {%- set key = node.config.unique_key -%}
    delete from {{ target_table }} where {{ publish_window_filter(day, windows) }};
    {%- if key and key != day %}
    delete from {{ target_table }}
    where {{ key }} in (select {{ key }} from {{ relation }} where {{ publish_window_filter(day, windows) }});
    {%- endif %}
    insert into {{ target_table }} select * from {{ relation }} where {{ publish_window_filter(day, windows) }};
{%- endmacro %}


{#- publish_state_sql(schema_prefix, mark, replace): the snapshot's own record (one row): when it was published and
    the newest change it holds, which BI can read to know how fresh the marts are. `replace` rewrites the row of an
    existing table in place (a reader's query is never waited for). -#}
{% macro publish_state_sql(schema_prefix, mark, replace) -%}
    {%- set state_sql -%}
    select
        current_timestamp as published_at,
        {{ int_timestamptz_literal(mark) if mark else before_every_load() }}
            as changes_through
    {%- endset -%}
    {% if replace -%}
    delete from {{ schema_prefix }}.publish_state;
    insert into {{ schema_prefix }}.publish_state {{ state_sql }};
    {%- else -%}
    create table {{ schema_prefix }}.publish_state as {{ state_sql }};
    {%- endif %}
{%- endmacro %}


{#- publish_prune_changes_sql(plan, relations): the changes the live snapshot already holds are dropped. Only
    those: the new snapshot is not live until the publish ends, and until then the live one is the reference. -#}
{% macro publish_prune_changes_sql(plan, relations) -%}
    {%- if plan.previous_mark -%}
        delete from {{ publish_changes_relation(relations[0].database) }}
        where changed_at <= {{ int_timestamptz_literal(plan.previous_mark) }};
    {%- endif -%}
{%- endmacro %}


{#- publish_log(plan, relations, where): what was copied, in dbt's log (and so in the Dagster step's). -#}
{% macro publish_log(plan, relations, where) -%}
    {%- if plan.full -%}
        {%- do log("publish_marts: " ~ relations | length ~ " marts copied whole to " ~ where, info=true) -%}
    {%- else -%}
        {%- set copied = [] -%}
        {%- for name, change in plan.marts.items() if change is not none -%}
            {%- do copied.append(name ~ (' (whole)' if change == 'whole' else ' (' ~ change | length ~ ' windows)')) -%}
        {%- endfor -%}
        {%- do log("publish_marts: changes since the previous snapshot copied to " ~ where ~ ": "
                   ~ (copied | join(', ') if copied else 'none'), info=true) -%}
    {%- endif -%}
{%- endmacro %}


{#- DuckDB: the snapshot file keeps the marts' schema name, so a query runs unchanged against either file. `path` is
    a new file, a copy of the published one when `copied` (the Dagster asset copies it): changes are applied to it,
    or, for a full publish, its tables are dropped first. -#}
{% macro duckdb__publish_marts(relations, path, schema, copied) -%}
    {%- if not path -%}
        {{ exceptions.raise_compiler_error("publish_marts: DuckDB needs --args '{path: <new snapshot file>}'") }}
    {%- endif -%}
    {%- set alias = 'marts_snapshot' -%}
    {%- set target_schema = relations[0].schema -%}
    {%- set snapshot = alias ~ '.' ~ target_schema -%}
    {%- do run_query("attach '" ~ (path | replace("'", "''")) ~ "' as " ~ alias) -%}
    {%- set plan = publish_plan(relations, target_schema if copied else none, alias) -%}
    {%- set copy_sql -%}
        {% if plan.full -%}
        {% if copied -%}
        drop schema if exists {{ snapshot }} cascade;
        {% endif -%}
        create schema {{ snapshot }};
        {% for relation in relations -%}
        create table {{ snapshot }}.{{ relation.identifier }} as select * from {{ relation }};
        {% endfor -%}
        {%- else -%}
        {% for relation in relations if plan.marts[relation.identifier] is not none -%}
        {% if plan.marts[relation.identifier] == 'whole' -%}
        drop table {{ snapshot }}.{{ relation.identifier }};
        create table {{ snapshot }}.{{ relation.identifier }} as select * from {{ relation }};
        {% else -%}
        {{ publish_changed_days_sql(relation, snapshot ~ '.' ~ relation.identifier, plan.marts[relation.identifier],
                                  plan.nodes[relation.identifier]) }}
        {% endif -%}
        {% endfor -%}
        {%- endif %}
        {{ publish_state_sql(snapshot, plan.mark, not plan.full) }}
    {%- endset -%}
    {%- do run_query(copy_sql) -%}
    {%- do adapter.commit() -%}
    {#- Detaching checkpoints the file: the renamed snapshot is complete without a write-ahead log beside it. -#}
    {%- do run_query('detach ' ~ alias) -%}
    {%- do adapter.commit() -%}
    {#- A DuckDB transaction writes to one database: the warehouse's changes are pruned after the snapshot's. -#}
    {%- if plan.previous_mark -%}
        {%- do run_query(publish_prune_changes_sql(plan, relations)) -%}
        {%- do adapter.commit() -%}
    {%- endif -%}
    {%- do publish_log(plan, relations, path) -%}
{%- endmacro %}


{#- PostgreSQL: a full publish builds <schema>__next and swaps it in; a publish of changes rewrites them in the
    published tables in one transaction (delete and insert: readers' running queries see the old rows until it
    commits and are never waited for; a whole mart is emptied by delete, as truncate would wait for them). -#}
{% macro postgres__publish_marts(relations, path, schema, copied) -%}
    {%- if not schema -%}
        {{ exceptions.raise_compiler_error("publish_marts: PostgreSQL needs --args '{schema: <published schema>}'") }}
    {%- endif -%}
    {%- set role = marts_bi_reader_role() -%}
    {%- set next, old = schema ~ '__next', schema ~ '__old' -%}
    {%- set existing = run_query(
        "select nspname from pg_catalog.pg_namespace where nspname in ('" ~ schema ~ "', '" ~ old ~ "')"
    ).columns[0].values() -%}
    {%- set plan = publish_plan(relations, schema if schema in existing else none, relations[0].database) -%}
    {%- set publish_sql -%}
        {% if plan.full -%}
        drop schema if exists {{ next }} cascade;
        create schema {{ next }};
        {% for relation in relations -%}
        create table {{ next }}.{{ relation.identifier }} as select * from {{ relation }};
        {% for index in plan.nodes[relation.identifier].config.get('indexes') or [] -%}
        {{ get_create_index_sql(api.Relation.create(database=relation.database, schema=next,
                                                    identifier=relation.identifier), index) }};
        {% endfor -%}
        analyze {{ next }}.{{ relation.identifier }};
        {% endfor -%}
        {{ publish_state_sql(next, plan.mark, false) }}
        grant usage on schema {{ next }} to {{ role }};
        grant select on all tables in schema {{ next }} to {{ role }};
        {% if old in existing -%}
        drop schema {{ old }} cascade;
        {% endif -%}
        {% if schema in existing -%}
        alter schema {{ schema }} rename to {{ old }};
        {% endif -%}
        alter schema {{ next }} rename to {{ schema }};
        {%- else -%}
        {% for relation in relations if plan.marts[relation.identifier] is not none -%}
        {% if plan.marts[relation.identifier] == 'whole' -%}
        delete from {{ schema }}.{{ relation.identifier }};
        insert into {{ schema }}.{{ relation.identifier }} select * from {{ relation }};
        {% else -%}
        {{ publish_changed_days_sql(relation, schema ~ '.' ~ relation.identifier, plan.marts[relation.identifier],
                                  plan.nodes[relation.identifier]) }}
        {% endif -%}
        {% endfor -%}
        {{ publish_state_sql(schema, plan.mark, true) }}
        {%- endif %}
        {{ publish_prune_changes_sql(plan, relations) }}
    {%- endset -%}
    {%- do run_query(publish_sql) -%}
    {%- do adapter.commit() -%}
    {%- do publish_log(plan, relations, 'schema ' ~ schema) -%}
{%- endmacro %}


{#- Spark: the embedded metastore admits one JVM, the run's own, so no reader can be attached while it publishes;
    each mart is replaced in the published database in turn. On a cluster with a shared metastore readers could
    see the copy half done: publishing there needs a table format with atomic swaps (Delta, Iceberg). -#}
{% macro spark__publish_marts(relations, path, schema, copied) -%}
    {%- if not schema -%}
        {{ exceptions.raise_compiler_error("publish_marts: Spark needs --args '{schema: <published database>}'") }}
    {%- endif -%}
    {%- do run_query('create database if not exists ' ~ schema) -%}
    {%- for relation in relations -%}
        {%- do run_query('drop table if exists ' ~ schema ~ '.' ~ relation.identifier) -%}
        {%- do run_query('create table ' ~ schema ~ '.' ~ relation.identifier ~ ' using parquet as select * from ' ~ relation) -%}
    {%- endfor -%}
    {%- do log("publish_marts: " ~ relations | length ~ " marts published in database " ~ schema, info=true) -%}
{%- endmacro %}
