{#- raw_*_versions(relation, where): every raw row ("version" of a key) typed, normalised, validated and ranked.

    The staged models keep rank 1 when it is valid; rejected_rows keeps rank 1 when it is invalid (plus every row
    without a key). One definition serves both, so each distinct raw key lands in exactly one of the two.

    Ranking of the versions of one key (at-least-once delivery):
      1. a valid version beats an invalid one        (a corrupt re-delivery never erases a good row),
      2. then the later _loaded_at wins              (corrections arrive in later loads),
      3. then _source_file and the raw values         (deterministic; identical repeats are interchangeable).
    This order is what makes the incremental models equal to a full refresh: new loads are ranked among
    themselves and a valid winner replaces the staged row (delete+insert), which by (1) and (2) it also would in a
    full ranking; an invalid newcomer is never staged, so the staged row stays, exactly as a full ranking decides.

    Columns prefixed with "_" are internal (clear-text email/IP among them, and the raw values as _raw_<column>) and
    never selected by a model, except _loaded_at, _reject_reason (rejected_rows.reason) and _raw_payload
    (rejected_rows.raw_payload, PII hashed, computed for rejected versions only).
-#}

{#- Every stage ends in an optimisation fence on PostgreSQL: OFFSET 0. Without it PostgreSQL pulls the chain of
    subqueries up and substitutes each stage's expressions into the next one's; the later stages reference the
    earlier ones many times (an IP is parsed from ~40 references to its candidate text, a network from ~10
    references to the IP, ...), so the substituted expression tree grows multiplicatively and planning alone can
    exhaust the server's memory. A subquery with OFFSET cannot be pulled up, yet it still streams its rows;
    MATERIALIZED CTEs, the obvious alternative, write every stage's full-width rows to temporary files (five
    stages of ~1 KB rows at 10M clicks filled a 60 GB disk). DuckDB eliminates common subexpressions itself and
    runs ~15% faster unfenced. -#}
{% macro stage_fence() -%}
    {{- return(adapter.dispatch('stage_fence', 'link_attribution')()) -}}
{%- endmacro %}

{% macro default__stage_fence() -%}
    offset 0
{%- endmacro %}

{% macro duckdb__stage_fence() -%}{%- endmacro %}

{% macro raw_source_cte(relation, where) -%}
src as (
    select * from {{ relation }}
    {%- if where %}
    where {{ where }}
    {%- endif %}
)
{%- endmacro %}

{#- The tie-break columns are only compared between versions of one key with equal validity and _loaded_at,
    so ordering by the raw values costs nothing on the vast majority of rows (unlike hashing every row). -#}
{% macro version_rank(key, raw_columns) -%}
    row_number() over (
        partition by {{ key }}
        order by
            case when _reject_reason is null then 0 else 1 end,
            _loaded_at desc,
            _source_file
            {%- for column in raw_columns %},
            _raw_{{ column }} nulls last
            {%- endfor %}
    )
{%- endmacro %}

{#- The raw columns, carried unchanged (as _raw_<column>) for the tie-break and the payload of rejected rows. -#}
{% macro carry_raw_columns(raw_columns) -%}
    {%- for column in raw_columns %}
        {{ column }} as _raw_{{ column }},
    {%- endfor %}
        _source_file,
{%- endmacro %}

{#- raw_payload of a rejected version: every raw column as delivered plus _source_file, except email and ip, which
    appear only as the same salted hashes the staged tables carry (raw PII stays in schema raw). -#}
{% macro rejected_payload(raw_columns) -%}
    {%- set pairs = [] -%}
    {%- for column in raw_columns if column not in ('email', 'ip') -%}
        {%- do pairs.append((column, '_raw_' ~ column)) -%}
    {%- endfor -%}
    {%- do pairs.append(('_source_file', '_source_file')) -%}
    {%- if 'email' in raw_columns -%}{%- do pairs.append(('email_hash', 'email_hash')) -%}{%- endif -%}
    {%- if 'ip' in raw_columns -%}{%- do pairs.append(('ip_hash', 'ip_hash')) -%}{%- endif -%}
    case when _reject_reason is not null then {{ link_attribution.json_object(pairs) }} end
{%- endmacro %}

{% macro is_future(ts) -%}
    {{ ts }} > {{ dbt.dateadd('hour', var('future_tolerance_hours') | int, '_loaded_at') }}
{%- endmacro %}


{#- ------------------------------------------------------------------------------------- links ---------- -#}
{% macro raw_links_versions(relation, where=none) %}
{%- set raw_columns = ['link_id', 'short_code', 'campaign_id', 'creator_id', 'channel', 'destination_url',
                       'created_at'] -%}
with {{ link_attribution.raw_source_cte(relation, where) }},

cleaned as (
    select
        {{ link_attribution.clean_identifier('link_id') }} as link_id,
        {{ link_attribution.clean_identifier('short_code') }} as short_code,
        {{ link_attribution.clean_identifier('campaign_id') }} as campaign_id,
        {{ link_attribution.clean_identifier('creator_id') }} as creator_id,
        lower({{ link_attribution.clean_identifier('channel') }}) as channel,
        {{ link_attribution.clean_text('destination_url') }} as destination_url,
        {{ link_attribution.clean_identifier('created_at') }} as _created_at_text,
        {{- link_attribution.carry_raw_columns(raw_columns) }}
        _loaded_at
    from src
    {{ link_attribution.stage_fence() }}
),

typed as (
    select
        cleaned.*,
        {{ link_attribution.safe_cast_timestamptz('_created_at_text') }} as created_at
    from cleaned
    {{ link_attribution.stage_fence() }}
),

validated as (
    select
        typed.*,
        {#- A link without a creation time is still usable (kept, created_at null); an unreadable one is a
            corrupt row. -#}
        case
            when link_id is null then 'missing_key'
            when _created_at_text is not null and created_at is null then 'invalid_created_at'
            when {{ link_attribution.is_future('created_at') }} then 'future_created_at'
        end as _reject_reason
    from typed
    {{ link_attribution.stage_fence() }}
),

ranked as (
    select
        validated.*,
        {{ link_attribution.version_rank('link_id', raw_columns) }} as _version_rank,
        {{ link_attribution.rejected_payload(raw_columns) }} as _raw_payload
    from validated
)

select * from ranked
{% endmacro %}


{#- ------------------------------------------------------------------------------------- clicks --------- -#}
{% macro raw_clicks_versions(relation, where=none) %}
{%- set raw_columns = ['click_id', 'link_id', 'clicked_at', 'ip', 'user_agent', 'referrer', 'cookie_id',
                       'session_id', 'device_fingerprint', 'user_id', 'email'] -%}
with {{ link_attribution.raw_source_cte(relation, where) }},

cleaned as (
    select
        {{ link_attribution.clean_identifier('click_id') }} as click_id,
        {{ link_attribution.clean_identifier('link_id') }} as link_id,
        {{ link_attribution.clean_identifier('clicked_at') }} as _clicked_at_text,
        {{ link_attribution.clean_text(link_attribution.clean_identifier('referrer'), 2000) }} as referrer,
        {{ link_attribution.visitor_fields_cleaned() }},
        {{- link_attribution.carry_raw_columns(raw_columns) }}
        _loaded_at
    from src
    {{ link_attribution.stage_fence() }}
),

normalised as (
    select
        cleaned.*,
        {{ link_attribution.safe_cast_timestamptz('_clicked_at_text') }} as clicked_at,
        {{ link_attribution.visitor_fields_normalised() }}
    from cleaned
    {{ link_attribution.stage_fence() }}
),

enriched as (
    select
        normalised.*,
        {{ link_attribution.utc_date('clicked_at') }} as clicked_date,
        {{ link_attribution.visitor_fields_enriched() }}
    from normalised
    {{ link_attribution.stage_fence() }}
),

classified as (
    select
        enriched.*,
        {{ link_attribution.visitor_fields_classified() }}
    from enriched
    {{ link_attribution.stage_fence() }}
),

validated as (
    select
        classified.*,
        {#- Row-level bot rules; behavioural ones (bursts, preview timing) are added by int_clicks. -#}
        coalesce(_ua_bot_reason, case when is_datacenter_ip then 'datacenter_ip' end) as bot_reason,
        (_ua_bot_reason is not null or is_datacenter_ip) as is_bot,
        case
            when click_id is null then 'missing_key'
            when _clicked_at_text is null then 'missing_clicked_at'
            when clicked_at is null then 'invalid_clicked_at'
            when {{ link_attribution.is_future('clicked_at') }} then 'future_clicked_at'
            when link_id is null then 'missing_link_id'
        end as _reject_reason
    from classified
    {{ link_attribution.stage_fence() }}
),

ranked as (
    select
        validated.*,
        {{ link_attribution.version_rank('click_id', raw_columns) }} as _version_rank,
        {{ link_attribution.rejected_payload(raw_columns) }} as _raw_payload
    from validated
)

select * from ranked
{% endmacro %}


{#- -------------------------------------------------------------------------------- conversions --------- -#}
{% macro raw_conversions_versions(relation, where=none) %}
{%- set raw_columns = ['conversion_id', 'converted_at', 'event_type', 'revenue', 'currency', 'user_id', 'email',
                       'cookie_id', 'session_id', 'device_fingerprint', 'ip', 'user_agent', 'click_id'] -%}
{%- set max_revenue = var('max_revenue') | float -%}
with {{ link_attribution.raw_source_cte(relation, where) }},

cleaned as (
    select
        {{ link_attribution.clean_identifier('conversion_id') }} as conversion_id,
        {{ link_attribution.clean_identifier('converted_at') }} as _converted_at_text,
        lower({{ link_attribution.clean_identifier('event_type') }}) as event_type,
        {#- Only an empty revenue means "no revenue": 'NaN', 'null' or '-' in a money column is a defect. -#}
        {{ link_attribution.clean_text('revenue') }} as _revenue_text,
        upper({{ link_attribution.clean_identifier('currency') }}) as _currency,
        {{ link_attribution.clean_identifier('click_id') }} as direct_click_id,
        {{ link_attribution.visitor_fields_cleaned() }},
        {{- link_attribution.carry_raw_columns(raw_columns) }}
        _loaded_at
    from src
    {{ link_attribution.stage_fence() }}
),

normalised as (
    select
        cleaned.*,
        {{ link_attribution.safe_cast_timestamptz('_converted_at_text') }} as converted_at,
        {{ link_attribution.safe_cast_numeric('_revenue_text') }} as _revenue_number,
        {{ link_attribution.visitor_fields_normalised() }}
    from cleaned
    {{ link_attribution.stage_fence() }}
),

enriched as (
    select
        normalised.*,
        {{ link_attribution.utc_date('converted_at') }} as converted_date,
        {{ link_attribution.visitor_fields_enriched() }}
    from normalised
    {{ link_attribution.stage_fence() }}
),

classified as (
    select
        enriched.*,
        {{ link_attribution.visitor_fields_classified() }}
    from enriched
    {{ link_attribution.stage_fence() }}
),

validated as (
    select
        classified.*,
        {#- The cast is guarded: an out-of-range value would abort the statement before it could be rejected. -#}
        case
            when _revenue_number between 0 and {{ max_revenue }} then cast(_revenue_number as numeric(18, 2))
        end as revenue,
        coalesce(
            _currency,
            case when _revenue_number is not null then '{{ var("default_currency") | upper }}' end
        ) as currency,
        case
            when conversion_id is null then 'missing_key'
            when _converted_at_text is null then 'missing_converted_at'
            when converted_at is null then 'invalid_converted_at'
            when {{ link_attribution.is_future('converted_at') }} then 'future_converted_at'
            when event_type is null then 'missing_event_type'
            when _revenue_text is not null and _revenue_number is null then 'invalid_revenue'
            when _revenue_number < 0 then 'negative_revenue'
            when _revenue_number > {{ max_revenue }} then 'revenue_too_large'
            when length(_currency) <> 3 then 'invalid_currency'
        end as _reject_reason
    from classified
    {{ link_attribution.stage_fence() }}
),

ranked as (
    select
        validated.*,
        {{ link_attribution.version_rank('conversion_id', raw_columns) }} as _version_rank,
        {{ link_attribution.rejected_payload(raw_columns) }} as _raw_payload
    from validated
)

select * from ranked
{% endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    Visitor fields, identical on clicks and conversions: browser identifiers, user, email, IP and user agent.
    One fragment per CTE of the chain cleaned -> normalised -> enriched -> classified.
--------------------------------------------------------------------------------------------------------- -#}
{% macro visitor_fields_cleaned() -%}
        {{ link_attribution.clean_identifier('cookie_id') }} as cookie_id,
        {{ link_attribution.clean_identifier('session_id') }} as session_id,
        {{ link_attribution.clean_identifier('device_fingerprint') }} as device_fingerprint,
        {{ link_attribution.clean_identifier('user_id') }} as user_id,
        {{ link_attribution.email_candidate('email') }} as _email_candidate,
        {{ link_attribution.ip_candidate('ip') }} as _ip_candidate,
        left({{ link_attribution.clean_identifier('user_agent') }}, {{ var('user_agent_max_length') | int }}) as user_agent
{%- endmacro %}

{% macro visitor_fields_normalised() -%}
        {{ link_attribution.normalize_email('_email_candidate') }} as _email,
        {{ link_attribution.normalize_ip('_ip_candidate') }} as _ip,
        lower(user_agent) as _ua
{%- endmacro %}

{% macro visitor_fields_enriched() -%}
        {{ link_attribution.hash_pii('_email') }} as email_hash,
        {{ link_attribution.hash_pii('_ip') }} as ip_hash,
        {{ link_attribution.hash_pii(link_attribution.ip_network('_ip')) }} as ip_network_hash,
        {{ link_attribution.ipv4_to_bigint('_ip') }} as _ip_int,
        {{ link_attribution.ua_bot_reason('_ua') }} as _ua_bot_reason,
        {{ link_attribution.ua_os_family('_ua') }} as os_family,
        {{ link_attribution.ua_browser('_ua') }} as browser
{%- endmacro %}

{% macro visitor_fields_classified() -%}
        {{ link_attribution.is_datacenter_ip('_ip_int', '_ip') }} as is_datacenter_ip,
        {{ link_attribution.ua_device_family('_ua', '_ua_bot_reason') }} as device_family,
        {{ link_attribution.ua_in_app_browser('_ua', '_ua_bot_reason') }} as in_app_browser
{%- endmacro %}
