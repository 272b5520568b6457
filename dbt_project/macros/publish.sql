{#- ---------------------------------------------------------------------------------------------------------
    Publishing the marts for BI: the last step of every run (`dbt run-operation publish_marts`, driven by the
    Dagster asset published/marts once every mart of the run is built). Readers query the published copy, never
    the tables dbt is rebuilding, so they see the previous run's marts or this run's, never a mix, and the
    pipeline never waits on them.

    - DuckDB: every mart is copied into a new database file (`path`, a temporary name beside the published file);
      the Dagster asset then swaps it in with an atomic rename. A reader holding the old file open keeps reading
      the old snapshot; the pipeline never opens the published file itself.
    - PostgreSQL: every mart is copied into schema <published>__next, granted to the BI role, and swapped in by
      renaming schemas in one transaction. Renaming takes no lock on the tables, so a reader's running query is
      never waited for; the previous snapshot stays as <published>__old until the next publish drops it.

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


{% macro publish_marts(path=none, schema=none) -%}
    {%- if schema is not none and not modules.re.match('^[a-z_][a-z0-9_]*$', schema | string) -%}
        {{ exceptions.raise_compiler_error("publish_marts: schema must be a plain SQL identifier, got '" ~ schema ~ "'") }}
    {%- endif -%}
    {%- set relations = publish_marts_relations() -%}
    {{- return(adapter.dispatch('publish_marts', 'link_attribution')(relations, path, schema)) -}}
{%- endmacro %}


{% macro default__publish_marts(relations, path, schema) -%}
    {{ exceptions.raise_compiler_error("publish_marts: no publishing for adapter " ~ adapter.type()) }}
{%- endmacro %}


{#- DuckDB: the snapshot file keeps the marts' schema name, so a query runs unchanged against either file. -#}
{% macro duckdb__publish_marts(relations, path, schema) -%}
    {%- if not path -%}
        {{ exceptions.raise_compiler_error("publish_marts: DuckDB needs --args '{path: <new snapshot file>}'") }}
    {%- endif -%}
    {%- set alias = 'marts_snapshot' -%}
    {%- set target_schema = relations[0].schema -%}
    {%- set copy_sql -%}
        attach '{{ path | replace("'", "''") }}' as {{ alias }};
        create schema {{ alias }}.{{ target_schema }};
        {% for relation in relations -%}
        create table {{ alias }}.{{ target_schema }}.{{ relation.identifier }} as select * from {{ relation }};
        {% endfor -%}
    {%- endset -%}
    {%- do run_query(copy_sql) -%}
    {%- do adapter.commit() -%}
    {#- Detaching checkpoints the file: the renamed snapshot is complete without a write-ahead log beside it. -#}
    {%- do run_query('detach ' ~ alias) -%}
    {%- do adapter.commit() -%}
    {%- do log("publish_marts: " ~ relations | length ~ " marts copied to " ~ path, info=true) -%}
{%- endmacro %}


{% macro postgres__publish_marts(relations, path, schema) -%}
    {%- if not schema -%}
        {{ exceptions.raise_compiler_error("publish_marts: PostgreSQL needs --args '{schema: <published schema>}'") }}
    {%- endif -%}
    {%- set role = marts_bi_reader_role() -%}
    {%- set next, old = schema ~ '__next', schema ~ '__old' -%}
    {%- set existing = run_query(
        "select nspname from pg_catalog.pg_namespace where nspname in ('" ~ schema ~ "', '" ~ old ~ "')"
    ).columns[0].values() -%}
    {%- set publish_sql -%}
        drop schema if exists {{ next }} cascade;
        create schema {{ next }};
        {% for relation in relations -%}
        create table {{ next }}.{{ relation.identifier }} as select * from {{ relation }};
        analyze {{ next }}.{{ relation.identifier }};
        {% endfor -%}
        grant usage on schema {{ next }} to {{ role }};
        grant select on all tables in schema {{ next }} to {{ role }};
        {% if old in existing -%}
        drop schema {{ old }} cascade;
        {% endif -%}
        {% if schema in existing -%}
        alter schema {{ schema }} rename to {{ old }};
        {% endif -%}
        alter schema {{ next }} rename to {{ schema }};
    {%- endset -%}
    {%- do run_query(publish_sql) -%}
    {%- do adapter.commit() -%}
    {%- do log("publish_marts: " ~ relations | length ~ " marts published in schema " ~ schema, info=true) -%}
{%- endmacro %}


{#- Spark: the embedded metastore admits one JVM, the run's own, so no reader can be attached while it publishes;
    each mart is replaced in the published database in turn. On a cluster with a shared metastore readers could
    see the copy half done: publishing there needs a table format with atomic swaps (Delta, Iceberg). -#}
{% macro spark__publish_marts(relations, path, schema) -%}
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
