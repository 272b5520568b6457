{#- Changing rows in place, written once for every engine: erase_rows (delete) and update_rows (update ... set).
    DuckDB and PostgreSQL delete and update; Spark's Parquet tables have neither, and a table cannot be overwritten
    by a query that reads it, so there the table is rewritten whole through a copy (rewrite_table). These macros run
    their statements (one per call: Spark runs a single statement at a time) and return nothing; the caller's
    transaction, where the engine has one, holds them. -#}

{#- rewrite_table(relation, select_sql), Spark's: replace every row of `relation` by the rows of `select_sql`, which
    reads `relation` and gives its columns in its order. The copy is a real table beside the original (a view would
    be read lazily, after the original is emptied). The original is emptied with TRUNCATE and refilled with INSERT
    INTO rather than INSERT OVERWRITE: the session runs with partitionOverwriteMode=dynamic, under which an overwrite
    of a partitioned table would keep every partition the copy has no row for (a partition whose rows were all erased
    would survive); TRUNCATE empties every partition, whatever the setting. Not atomic (Spark's Parquet tables have
    no transactions): a failure between the two leaves the rows in the copy `<table>__copy`, which the next rewrite
    replaces. DuckDB and PostgreSQL never need it: they delete and update in place. -#}
{% macro rewrite_table(relation, select_sql) %}
    {%- set copy = api.Relation.create(schema=relation.schema, identifier=relation.identifier ~ '__copy') -%}
    {%- do run_query('drop table if exists ' ~ copy) -%}
    {%- do run_query('create table ' ~ copy ~ ' using parquet as ' ~ select_sql) -%}
    {%- do run_query('truncate table ' ~ relation) -%}
    {%- do run_query('insert into ' ~ relation ~ ' select * from ' ~ copy) -%}
    {%- do run_query('drop table ' ~ copy) -%}
{% endmacro %}


{#- erase_rows(relation, where): delete the rows of `relation` for which the SQL condition `where` is true. -#}
{% macro erase_rows(relation, where) %}
    {%- do adapter.dispatch('erase_rows', 'link_attribution')(relation, where) -%}
{% endmacro %}

{% macro default__erase_rows(relation, where) %}
    {%- do run_query('delete from ' ~ relation ~ ' where ' ~ where) -%}
{% endmacro %}

{#- Kept: every row whose condition is false or null, as DELETE keeps it. -#}
{% macro spark__erase_rows(relation, where) %}
    {%- do link_attribution.rewrite_table(relation, 'select * from ' ~ relation ~ ' where (' ~ where ~ ') is not true') -%}
{% endmacro %}


{#- update_rows(relation, assignments, where): set each column of `assignments` (column name → SQL expression over
    the row's columns) in the rows of `relation` for which `where` is true. -#}
{% macro update_rows(relation, assignments, where) %}
    {%- do adapter.dispatch('update_rows', 'link_attribution')(relation, assignments, where) -%}
{% endmacro %}

{% macro default__update_rows(relation, assignments, where) %}
    {%- set sets = [] -%}
    {%- for column, expression in assignments.items() -%}
        {%- do sets.append(column ~ ' = ' ~ expression) -%}
    {%- endfor -%}
    {%- do run_query('update ' ~ relation ~ ' set ' ~ sets | join(', ') ~ ' where ' ~ where) -%}
{% endmacro %}

{#- The condition is evaluated once per row (it may hold subqueries), then each column takes its new value where it
    held, its old one elsewhere. -#}
{% macro spark__update_rows(relation, assignments, where) %}
    {%- set columns = [] -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
        {%- if column.name in assignments -%}
            {%- do columns.append('case when __rewrite_matched then ' ~ assignments[column.name] ~ ' else ' ~ column.name ~ ' end as ' ~ column.name) -%}
        {%- else -%}
            {%- do columns.append(column.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set select_sql = 'select ' ~ columns | join(', ') ~ ' from (select *, coalesce((' ~ where ~ '), false) as __rewrite_matched from ' ~ relation ~ ') as matched_rows' -%}
    {%- do link_attribution.rewrite_table(relation, select_sql) -%}
{% endmacro %}


{#- Scratch tables of an operation (the rows it works on, fixed before it changes anything): temporary tables of the
    operation's session on DuckDB and PostgreSQL. create_scratch_table(name, sql) returns the name to read it by. -#}
{% macro create_scratch_table(name, sql) %}
    {{- return(adapter.dispatch('create_scratch_table', 'link_attribution')(name, sql)) -}}
{% endmacro %}

{% macro default__create_scratch_table(name, sql) %}
    {%- do run_query('create temporary table ' ~ name ~ ' as ' ~ sql) -%}
    {{- return(name) -}}
{% endmacro %}

{#- Spark: real Parquet tables in database `scratch`, dropped by drop_scratch_tables. A temporary view would be
    evaluated lazily, at each read: once raw is rewritten it would find none of the rows it named. -#}
{% macro spark__create_scratch_table(name, sql) %}
    {%- set relation = api.Relation.create(schema='scratch', identifier=name) -%}
    {%- do run_query('create database if not exists scratch') -%}
    {%- do run_query('drop table if exists ' ~ relation) -%}
    {%- do run_query('create table ' ~ relation ~ ' using parquet as ' ~ sql) -%}
    {{- return(relation | string) -}}
{% endmacro %}

{% macro drop_scratch_tables() %}
    {%- do adapter.dispatch('drop_scratch_tables', 'link_attribution')() -%}
{% endmacro %}

{#- Temporary tables end with the session. -#}
{% macro default__drop_scratch_tables() %}
{% endmacro %}

{% macro spark__drop_scratch_tables() %}
    {%- do run_query('drop database if exists scratch cascade') -%}
{% endmacro %}
