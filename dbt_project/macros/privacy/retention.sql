{#- Raw retention: raw rows loaded more than var raw_retention_days ago keep only the hashes of their identifiers.
    Run as the pre-hook of model raw_retention, after the staged models (which hold the same rows hashed already:
    staging is incremental on _loaded_at and never re-reads the rows it staged, so nothing downstream changes). -#}

{#- retained_value(column, kind): the column's value as 'sha256:' || its salted hash, the one staging computes for
    it (email: normalised first; the others: cleaned). Empty, junk and already-retained values are left as they
    are; a value that is no email or address becomes '' (staging had dropped it already). -#}
{% macro retained_value(column, kind) -%}
    {%- set cleaned = link_attribution.clean_identifier(column) -%}
    case
        when {{ column }} like 'sha256:%' or {{ cleaned }} is null then {{ column }}
        {%- if kind == 'email' %}
        else coalesce('sha256:' || {{ link_attribution.hash_pii(link_attribution.normalize_email("lower(" ~ cleaned ~ ")")) }}, '')
        {%- else %}
        else 'sha256:' || {{ link_attribution.hash_pii(cleaned) }}
        {%- endif %}
    end
{%- endmacro %}

{#- The raw identifier columns retention hashes, per raw table. The IP keeps the hash staging made of its canonical
    form only through the staged tables: raw keeps the hash of its cleaned text. -#}
{% macro retention_columns() -%}
    {{- return({
        'clicks': {'email': 'email', 'ip': 'text', 'user_id': 'text', 'cookie_id': 'text', 'session_id': 'text',
                   'device_fingerprint': 'text'},
        'conversions': {'email': 'email', 'ip': 'text', 'user_id': 'text', 'cookie_id': 'text', 'session_id': 'text',
                        'device_fingerprint': 'text'},
    }) -}}
{%- endmacro %}

{#- retention_scope(table): the raw rows retention applies to: loaded before the cut-off. Every such row has been
    read by staging: retention runs after the staged models (and the quarantine) in the same build, which read every
    row loaded before it started, and a row loaded since is younger than any window. -#}
{% macro retention_scope(table) -%}
    _loaded_at < {{ dbt.dateadd('day', -1 * (var('raw_retention_days') | int), dbt.current_timestamp()) }}
{%- endmacro %}

{#- apply_raw_retention(): per raw table, the rows in retention_scope that still hold a clear value get the
    hashes of their identifiers (update_rows: an update on DuckDB and PostgreSQL, a rewrite through a copy on Spark,
    whose Parquet tables cannot be updated in place). Runs its statements itself, in the hook's transaction where
    the engine has one; the hook's own SQL is a no-op. -#}
{% macro apply_raw_retention() %}
    {%- if execute %}
    {%- for table, columns in link_attribution.retention_columns().items() %}
    {%- set raw = api.Relation.create(database=link_attribution.target_database(), schema='raw', identifier=table) %}
    {%- set assignments = {} %}
    {%- for column, kind in columns.items() %}
    {%- do assignments.update({column: link_attribution.retained_value(column, kind)}) %}
    {%- endfor %}
    {%- do link_attribution.update_rows(raw, assignments,
            link_attribution.retention_scope(table) ~ ' and ' ~ link_attribution.retention_pending(columns)) %}
    {%- endfor %}
    {%- endif %}
    select 1
{% endmacro %}

{% macro retention_pending(columns) -%}
    (
        {%- for column in columns %}
        ({{ link_attribution.clean_identifier(column) }} is not null and {{ column }} not like 'sha256:%'){{ " or" if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}
