{#- Value cleaning shared by the staging models. Every macro takes a SQL expression (usually a raw text column)
    and returns a portable SQL expression; nothing here is engine-specific. -#}

{#- The empty string plus var junk_identifier_values, lower-cased and trimmed, as a SQL list literal. -#}
{% macro junk_values_sql() -%}
    {%- set values = [''] -%}
    {%- for value in var('junk_identifier_values', []) -%}
        {%- do values.append((value | string | trim | lower).replace("'", "''")) -%}
    {%- endfor -%}
    ('{{ values | unique | join("', '") }}')
{%- endmacro %}


{#- trim_whitespace(text): the text without surrounding ASCII whitespace (space, tab, newline, vertical tab, form
    feed, carriage return). Plain trim() removes spaces only, so a key delivered as a lone tab would otherwise be a
    real key, and a cookie id of '\t' would link every visitor that has it. -#}
{% macro trim_whitespace(expr) -%}
    {{- return(adapter.dispatch('trim_whitespace', 'link_attribution')(expr)) -}}
{%- endmacro %}

{% macro default__trim_whitespace(expr) -%}
    trim(both ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13) from {{ expr }})
{%- endmacro %}

{#- DuckDB's trim with a character set copies every string (~0.8 s per column per 10M rows); nearly no value needs
    it, so it only runs when the first or last character is a space or a control character (DuckDB compares
    strings bytewise; multi-byte characters start above ' '). -#}
{% macro duckdb__trim_whitespace(expr) -%}
    case
        when substr({{ expr }}, 1, 1) <= ' ' or substr({{ expr }}, length({{ expr }}), 1) <= ' '
            then {{ link_attribution.default__trim_whitespace(expr) }}
        else {{ expr }}
    end
{%- endmacro %}


{#- clean_identifier(text): trimmed value, or null when it is empty or a junk placeholder ('null', 'undefined',
    '0', '-', ... see var junk_identifier_values). Case is kept: identifiers are case-sensitive. -#}
{% macro clean_identifier(expr) -%}
    {%- set trimmed = link_attribution.trim_whitespace(expr) -%}
    case when lower({{ trimmed }}) in {{ link_attribution.junk_values_sql() }} then null else {{ trimmed }} end
{%- endmacro %}


{#- clean_text(text, max_length): trimmed free text (URLs, user agents), null when empty, optionally truncated.
    Free text keeps junk-looking words: 'unknown' can be a legitimate part of a URL. -#}
{% macro clean_text(expr, max_length=none) -%}
    {%- if max_length is none -%}
    nullif({{ link_attribution.trim_whitespace(expr) }}, '')
    {%- else -%}
    nullif(left({{ link_attribution.trim_whitespace(expr) }}, {{ max_length | int }}), '')
    {%- endif -%}
{%- endmacro %}


{#- json_object(pairs): '{"k1": v1, ...}' from a list of (key, expression) pairs, for raw_payload. Each value is a
    JSON string literal (or null) escaping backslash, quote and every control character (JSON forbids them raw:
    \n, \r and \t by name, the others as \u00XX), cut at 1000 characters so one huge cell cannot bloat the
    quarantine. Backslashes are written chr(92): a '\' literal would depend on standard_conforming_strings, and
    sqlparse (which dbt runs over unit-test SQL) reads it as an escape and then splits the statement at a later
    ';'. -#}
{% macro json_object(pairs) -%}
    {%- set bs = "chr(92)" -%}
    {%- set escapes = [(bs, bs ~ " || " ~ bs), ("'\"'", bs ~ " || '\"'"), ("chr(10)", bs ~ " || 'n'"),
                       ("chr(13)", bs ~ " || 'r'"), ("chr(9)", bs ~ " || 't'")] -%}
    {%- for code in link_attribution.json_control_codes() if code not in (9, 10, 13) -%}
        {%- do escapes.append(("chr(" ~ code ~ ")", bs ~ " || 'u00" ~ ('%02x' % code) ~ "'")) -%}
    {%- endfor -%}
    '{' ||
    {%- for key, expr in pairs %}
        {%- set value = namespace(sql="left(" ~ expr ~ ", 1000)") -%}
        {%- for char, escaped in escapes -%}
            {%- set value.sql = "replace(" ~ value.sql ~ ", " ~ char ~ ", " ~ escaped ~ ")" -%}
        {%- endfor %}
        '{{ "" if loop.first else ", " }}"{{ key }}": ' || coalesce('"' || {{ value.sql }} || '"', 'null') ||
    {%- endfor %}
    '}'
{%- endmacro %}


{#- json_control_codes(): the control characters json_object escapes. PostgreSQL text cannot hold NUL (and chr(0)
    is an error there); DuckDB text can. -#}
{% macro json_control_codes() -%}
    {{- return(adapter.dispatch('json_control_codes', 'link_attribution')()) -}}
{%- endmacro %}

{% macro default__json_control_codes() -%}
    {{- return(range(1, 32) | list) -}}
{%- endmacro %}

{% macro duckdb__json_control_codes() -%}
    {{- return(range(0, 32) | list) -}}
{%- endmacro %}

{% macro spark__json_control_codes() -%}
    {{- return(range(0, 32) | list) -}}
{%- endmacro %}


{#- Incremental watermark: only raw rows loaded after the newest row already staged. The loader stamps every load
    with a strictly increasing _loaded_at, so nothing is skipped; an empty target reads everything. A load whose
    rows are all rejected does not move the watermark, so it is re-read (harmlessly: same result) by the next run. -#}
{% macro loaded_after_watermark(relation) -%}
    _loaded_at > {{ stored_watermark(relation, '_loaded_at') }}
{%- endmacro %}


{#- Whether a value may be read from `relation` while the model is rendered: only when `run` or `build` executes
    it. `compile` and `docs generate` may see a table built by something else, and a unit test's inputs are its
    given rows: `this` named by a string, a ref by a CTE that dbt names __dbt__cte__<model>. -#}
{% macro reads_built_table(relation) -%}
    {{- return(execute and flags.WHICH in ['run', 'build'] and relation is not string
               and not relation.identifier.startswith('__dbt__cte__')) -}}
{%- endmacro %}


{#- The watermark of an incremental model's stored rows: the newest stamp in `column`. PostgreSQL estimates a
    comparison with a subquery's value as a third of the table and scans it whole; given the value itself, it
    reads the few newer rows through the load-stamp index (models' `indexes`, the loader's on raw). So on
    PostgreSQL the value is read and inlined when the model runs (reads_built_table); otherwise it stays a scalar
    subquery. -#}
{% macro stored_watermark(relation, column) -%}
    {%- if target.type == 'postgres' and reads_built_table(relation) -%}
        {%- set value = run_query('select cast(' ~ loaded_watermark(column) ~ ' as text) from ' ~ relation)
            .columns[0].values()[0] -%}
        {{ int_timestamptz_literal(value) }}
    {%- else -%}
        (select {{ loaded_watermark(column) }} from {{ relation }})
    {%- endif -%}
{%- endmacro %}


{#- Load marks: how far a model has read raw, for a model whose rows cannot say it. rejected_values holds a row
    only for an unusable value, so its newest row stops at the last load that carried one, and as a watermark it
    would send every run back over all of raw. Its post-hook (record_load_mark) notes the newest load the staged
    tables hold, which the run has read, in <schema>.dbt_load_marks; the next run reads raw from there
    (read_load_mark). The staged tables are built before the model in the same invocation and not written again
    until the next, so the mark never passes a load the model's select did not see; a load newer than the mark is
    at worst read twice, which delete+insert makes harmless. Without a mark (the first build, a warehouse from
    before the marks, compile and docs generate, a unit test's given `this`) the model's own newest row is the
    watermark, as before. -#}
{% macro read_load_mark(relation) -%}
    {%- if reads_built_table(relation) -%}
        {%- set marks = adapter.get_relation(database=relation.database, schema=relation.schema,
                                             identifier='dbt_load_marks') -%}
        {%- if marks is not none -%}
            {%- set value = run_query("select cast(max(loaded_through) as " ~ dbt.type_string() ~ ") from " ~ marks
                                      ~ " where model_name = '" ~ relation.identifier ~ "'").columns[0].values()[0] -%}
            {%- if value is not none -%}
                {{- return(int_timestamptz_literal(value)) -}}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
    {{- return(stored_watermark(relation, '_loaded_at')) -}}
{%- endmacro %}


{#- The post-hook that records the mark: the newest _loaded_at of `staged` (the staged models the select's raw
    tables feed, named in the model's depends_on), replacing the model's previous mark. -#}
{% macro record_load_mark(staged) -%}
    {#- Only an incremental model reads from a mark (staging is a table on Spark). -#}
    {%- if config.get('materialized') != 'incremental' -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set marks = api.Relation.create(database=this.database, schema=this.schema, identifier='dbt_load_marks') -%}
    create table if not exists {{ marks }} (
        model_name {{ dbt.type_string() }},
        loaded_through timestamp with time zone
    );
    delete from {{ marks }} where model_name = '{{ this.identifier }}';
    insert into {{ marks }} (model_name, loaded_through)
    select '{{ this.identifier }}', max(_loaded_at)
    from (
        {%- for name in staged %}
        select max(_loaded_at) as _loaded_at from {{ ref(name) }}
        {%- if not loop.last %} union all{% endif %}
        {%- endfor %}
    ) as staged
    having max(_loaded_at) is not null
{%- endmacro %}


{#- The newest load stamp in `column` over the rows aggregated, or a time before every load when there are none. -#}
{% macro loaded_watermark(column) -%}
    coalesce(max({{ column }}), {{ before_every_load() }})
{%- endmacro %}


{#- before_every_load(): a time stamp older than every load, the mark of "nothing loaded (or published) yet". -#}
{% macro before_every_load() -%}
    {{ int_timestamptz_literal('1900-01-01 00:00:00+00:00') }}
{%- endmacro %}
