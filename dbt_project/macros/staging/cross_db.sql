{#- Warehouse differences of the staging layer, isolated behind adapter.dispatch (dbt-utils style):
    a default__ implementation plus only the overrides an engine needs. Models call the un-prefixed names. -#}

{#- ---------------------------------------------------------------------------------------------------------
    create_staging_functions(): on-run-start hook. PostgreSQL has no try_cast, and a failing cast aborts the
    whole statement, so the safe casts below call tiny plpgsql functions that swallow the conversion error.
    DuckDB has try_cast: nothing to create.
--------------------------------------------------------------------------------------------------------- -#}
{% macro create_staging_functions() %}
    {{- return(adapter.dispatch('create_staging_functions', 'link_attribution')()) -}}
{% endmacro %}

{% macro default__create_staging_functions() %}{% endmacro %}

{% macro postgres__create_staging_functions() %}
{#- An advisory lock serialises concurrent dbt invocations: two simultaneous CREATE OR REPLACE FUNCTION on the
    same function fail with "tuple concurrently updated". SET TimeZone pins offset-less timestamps to UTC
    whatever the session says. The functions are PARALLEL UNSAFE: an exception block starts a
    subtransaction, which neither a parallel worker nor the leader of a parallel query may do ("cannot start
    subtransactions during a parallel operation" once the planner goes parallel on large tables). -#}
do $staging_functions$
begin
    perform pg_advisory_xact_lock(hashtext('link_attribution.staging_functions'));
    create schema if not exists staging;

    create or replace function staging.try_cast_timestamptz(value text) returns timestamptz
    language plpgsql stable parallel unsafe set timezone = 'UTC' as $fn$
    begin
        return value::timestamptz;
    exception when others then
        return null;
    end
    $fn$;

    create or replace function staging.try_cast_numeric(value text) returns numeric
    language plpgsql immutable parallel unsafe as $fn$
    declare
        parsed numeric;
    begin
        -- numeric(38, 6) is DuckDB's widest decimal: both engines refuse the same magnitudes.
        parsed := value::numeric(38, 6);
        if parsed = 'NaN'::numeric then
            return null;
        end if;
        return parsed;
    exception when others then
        return null;
    end
    $fn$;
end
$staging_functions$
{% endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    safe_cast_timestamptz(text) -> timestamp with time zone (UTC) or null when the text is not a timestamp.
    Only ISO-8601-shaped text (YYYY-MM-DD...) reaches the engine's parser: PostgreSQL would otherwise accept
    words such as 'now', 'today' or 'epoch', which are neither deterministic nor portable. A space before the
    UTC offset ('10:00:00 +02:00') is removed because DuckDB refuses it and PostgreSQL accepts it.
    `expr` should be a column (it is referenced twice).
--------------------------------------------------------------------------------------------------------- -#}
{% macro safe_cast_timestamptz(expr) %}
    {%- set text = "replace(replace(" ~ expr ~ ", ' +', '+'), ' -', '-')" -%}
    case
        when {{ expr }} like '____-__-__%'
            then {{ adapter.dispatch('safe_cast_timestamptz', 'link_attribution')(text) }}
    end
{%- endmacro %}

{% macro default__safe_cast_timestamptz(expr) -%}
    {{ dbt.safe_cast(expr, 'timestamp with time zone') }}
{%- endmacro %}

{% macro duckdb__safe_cast_timestamptz(expr) -%}
    try_cast({{ expr }} as timestamp with time zone)
{%- endmacro %}

{#- Spark's timestamp is an instant; text without an offset is read in the session's zone, which is UTC. -#}
{% macro spark__safe_cast_timestamptz(expr) -%}
    try_cast({{ expr }} as timestamp)
{%- endmacro %}

{#- The plpgsql function opens a subtransaction per call (~3 us a row: 3.4 s per 1M clicks against 0.4 s for a plain
    cast). Text that the cast certainly accepts - an ISO timestamp with an explicit offset, day of month at most 28,
    year 1000 or later, offset within PostgreSQL's +-15:59 - is cast directly, with the same result; everything
    else (days 29-31, offset-less text, anything odd) still goes through the function. -#}
{% macro postgres__safe_cast_timestamptz(expr) -%}
    {%- set certain = "^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?(Z|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)$" -%}
    case
        when {{ expr }} ~ '{{ certain }}' then cast({{ expr }} as timestamp with time zone)
        else staging.try_cast_timestamptz({{ expr }})
    end
{%- endmacro %}


{#- regex_full_match(text, pattern) -> true when the whole text matches. Patterns must stay in the syntax RE2
    (DuckDB) and PostgreSQL AREs share: literals, [classes], (groups), |, ?, *, +, {m,n}. No backslashes: write
    [.] for a dot (a backslash in a SQL literal also trips sqlparse, which dbt runs over unit-test SQL). -#}
{% macro regex_full_match(expr, pattern) %}
    {%- if '\\' in pattern -%}
        {{ exceptions.raise_compiler_error("regex_full_match: write the pattern without backslashes: " ~ pattern) }}
    {%- endif -%}
    {{- return(adapter.dispatch('regex_full_match', 'link_attribution')(expr, pattern)) -}}
{% endmacro %}

{% macro default__regex_full_match(expr, pattern) -%}
    ({{ expr }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}

{% macro duckdb__regex_full_match(expr, pattern) -%}
    regexp_full_match({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__regex_full_match(expr, pattern) -%}
    ({{ expr }} rlike '^(?:{{ pattern }})$')
{%- endmacro %}


{#- safe_cast_numeric(text) -> numeric, or null for text that is not a finite decimal (NaN, 'abc', '1,000'),
    or that does not fit numeric(38, 6). -#}
{% macro safe_cast_numeric(expr) %}
    {{- return(adapter.dispatch('safe_cast_numeric', 'link_attribution')(expr)) -}}
{% endmacro %}

{% macro default__safe_cast_numeric(expr) -%}
    {{ dbt.safe_cast(expr, 'numeric(38, 6)') }}
{%- endmacro %}

{% macro duckdb__safe_cast_numeric(expr) -%}
    try_cast({{ expr }} as decimal(38, 6))
{%- endmacro %}

{% macro spark__safe_cast_numeric(expr) -%}
    try_cast({{ expr }} as decimal(38, 6))
{%- endmacro %}

{% macro postgres__safe_cast_numeric(expr) -%}
    staging.try_cast_numeric({{ expr }})
{%- endmacro %}


{#- utc_date(timestamptz) -> the calendar date in UTC, independent of the session time zone. -#}
{% macro utc_date(expr) %}
    {{- return(adapter.dispatch('utc_date', 'link_attribution')(expr)) -}}
{% endmacro %}

{% macro default__utc_date(expr) -%}
    cast(({{ expr }}) at time zone 'UTC' as date)
{%- endmacro %}

{% macro duckdb__utc_date(expr) -%}
    cast(timezone('UTC', {{ expr }}) as date)
{%- endmacro %}

{#- The Spark target's sessions run in UTC (spark.sql.session.timeZone, profiles.yml). -#}
{% macro spark__utc_date(expr) -%}
    cast({{ expr }} as date)
{%- endmacro %}


{#- epoch_seconds(timestamptz) -> seconds since 1970-01-01 UTC (fractional), for time arithmetic in window
    frames (RANGE offsets on a number work the same on both engines, interval offsets do not). -#}
{% macro epoch_seconds(expr) %}
    {{- return(adapter.dispatch('epoch_seconds', 'link_attribution')(expr)) -}}
{% endmacro %}

{% macro default__epoch_seconds(expr) -%}
    cast(extract(epoch from {{ expr }}) as double precision)
{%- endmacro %}

{% macro duckdb__epoch_seconds(expr) -%}
    epoch({{ expr }})
{%- endmacro %}

{% macro spark__epoch_seconds(expr) -%}
    (cast(unix_micros({{ expr }}) as double) / 1000000)
{%- endmacro %}


{#- hash_pii(text) -> lower-case hex SHA-256 of salt || value; null stays null. The same value hashes the same
    everywhere (joins on email_hash / ip_hash work), while the raw value stays in schema raw only. The salt is the
    var pii_salt (env ATTRIBUTION_PII_SALT). -#}
{% macro hash_pii(expr) -%}
    {{ link_attribution.sha256_hex(link_attribution.pii_salt_literal() ~ " || (" ~ expr ~ ")") }}
{%- endmacro %}

{#- The salt: var pii_salt when set (ATTRIBUTION_PII_SALT, or a unit test's override), else the warehouse's own,
    read by a scalar subquery that both engines evaluate once per statement, so it is never written into SQL. -#}
{% macro pii_salt_literal() -%}
    {%- if var("pii_salt", "") | string | length > 0 -%}
    '{{ var("pii_salt") | string | replace("'", "''") }}'
    {%- else -%}
    (select max(salt) from {{ link_attribution.pii_salt_relation() }})
    {%- endif -%}
{%- endmacro %}

{% macro pii_salt_relation() -%}
    {{ api.Relation.create(database=link_attribution.target_database(), schema='raw', identifier='pii_salt') }}
{%- endmacro %}

{#- check_pii_salt(): on-run-start hook. Without var pii_salt, a warehouse whose raw schema holds clicks must hold
    its salt (raw.pii_salt, one row), or every hash would silently be null. `attribution run` creates it. -#}
{% macro check_pii_salt() %}
    {%- if execute and (var("pii_salt", "") | string | length == 0) -%}
        {#- Statements without a transaction: adapter.get_relation or run_query would open one on the hooks'
            connection, and every hook after this one would then run inside it, never committed. -#}
        {%- set tables = link_attribution.pii_salt_raw_tables() -%}
        {%- if 'clicks' in tables -%}
            {%- set rows = namespace(n=0) -%}
            {%- if 'pii_salt' in tables -%}
                {%- call statement('pii_salt_rows', fetch_result=True, auto_begin=False) -%}
                    select count(*) from {{ link_attribution.pii_salt_relation() }}
                {%- endcall -%}
                {%- set rows.n = load_result('pii_salt_rows')['table'].columns[0].values()[0] | int -%}
            {%- endif -%}
            {%- if rows.n != 1 -%}
                {{ exceptions.raise_compiler_error(
                    "raw.pii_salt holds " ~ rows.n ~ " salt(s); expected exactly one. Run `attribution run` once (it "
                    ~ "creates the warehouse's own salt), restore raw.pii_salt from a backup, or set ATTRIBUTION_PII_SALT.") }}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}


{#- pii_salt_raw_tables(): which of raw.clicks and raw.pii_salt exist (for check_pii_salt). -#}
{% macro pii_salt_raw_tables() %}
    {{- return(adapter.dispatch('pii_salt_raw_tables', 'link_attribution')()) -}}
{% endmacro %}

{% macro default__pii_salt_raw_tables() %}
    {%- call statement('pii_salt_tables', fetch_result=True, auto_begin=False) -%}
        select table_name from information_schema.tables
        where table_schema = 'raw' and table_name in ('clicks', 'pii_salt')
    {%- endcall -%}
    {{- return(load_result('pii_salt_tables')['table'].columns[0].values() | list) -}}
{% endmacro %}

{#- Spark has no information_schema: the raw database's table list (no transactions to stay out of). -#}
{% macro spark__pii_salt_raw_tables() %}
    {%- if run_query("show databases like 'raw'") | length == 0 -%}
        {{- return([]) -}}
    {%- endif -%}
    {%- set names = run_query('show tables in raw').columns['tableName'].values() -%}
    {{- return(names | select('in', ['clicks', 'pii_salt']) | list) -}}
{% endmacro %}


{#- stage_fence(): the last clause of every stage of a staging model. On PostgreSQL an optimisation fence: OFFSET 0.
    Without it PostgreSQL pulls the chain of subqueries up and substitutes each stage's expressions into the next
    one's; the later stages reference the earlier ones many times (an IP is parsed from ~40 references to its
    candidate text, a network from ~10 references to the IP, ...), so the substituted expression tree grows
    multiplicatively and planning alone can exhaust the server's memory. A subquery with OFFSET cannot be pulled
    up, yet it still streams its rows; MATERIALIZED CTEs, the obvious alternative, write every stage's full-width
    rows to temporary files (five stages of ~1 KB rows at 10M clicks filled a 60 GB disk). DuckDB eliminates common
    subexpressions itself and runs ~15% faster unfenced. -#}
{% macro stage_fence() -%}
    {{- return(adapter.dispatch('stage_fence', 'link_attribution')()) -}}
{%- endmacro %}

{% macro default__stage_fence() -%}
    offset 0
{%- endmacro %}

{% macro duckdb__stage_fence() -%}{%- endmacro %}

{#- Spark's optimiser collapses the stages without copying expensive expressions into the next one. -#}
{% macro spark__stage_fence() -%}{%- endmacro %}


{#- target_database(): the database part of a relation the macros name themselves (raw.*, the suppression list).
    Spark has none (a Spark relation is schema.identifier; its target defines no database). -#}
{% macro target_database() %}
    {{- return(adapter.dispatch('target_database', 'link_attribution')()) -}}
{% endmacro %}

{% macro default__target_database() %}
    {{- return(target.database) -}}
{% endmacro %}

{% macro spark__target_database() %}
    {{- return(none) -}}
{% endmacro %}
