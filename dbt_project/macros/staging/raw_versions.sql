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

{% macro where_clause(where) -%}
    {%- if where %}where {{ where }}{% endif -%}
{%- endmacro %}

{#- versions_of(relation, where, key, raw_columns, chain, visitor): the shared skeleton of raw_*_versions.

    Ranking needs a window over the versions of each key, and a window materialises every column of every row it
    sees (at 10M clicks, ~5 GB of wide rows spilled to disk: half of staging's time). Yet nearly every key arrives
    once. So the keys that occur more than once are found first (a narrow GROUP BY on the cleaned key), and the
    chain of stages runs twice over disjoint halves of the raw rows: keys seen once get rank 1 without a window,
    only the repeated keys are ranked. The result is the same as ranking every row.

    `chain(src)` renders one table's stages (a full WITH ... SELECT statement) over the raw rows selected by the
    SQL `src` (versions_src). With `visitor`, the user-agent and IP lookups (visitor_lookups) are defined once for
    both halves. The CTEs read twice are materialised, so neither engine computes them twice. -#}
{% macro versions_of(relation, where, key, raw_columns, chain, visitor=false) -%}
{%- set key_expr = link_attribution.clean_identifier(key) -%}
with repeated_keys as materialized (
    select {{ key_expr }} as _repeated_key
    from {{ relation }}
    {{ link_attribution.where_clause(where) }}
    group by 1
    having count(*) > 1
),

{%- if visitor %}
{{ link_attribution.visitor_lookups(relation, where) }},
{%- endif %}

single_versions as (
    {{ chain(link_attribution.versions_src(relation, where, key_expr, repeated=false, visitor=visitor)) }}
),

repeated_versions as (
    {{ chain(link_attribution.versions_src(relation, where, key_expr, repeated=true, visitor=visitor)) }}
),

ranked as (
    select single_versions.*, 1 as _version_rank from single_versions
    union all
    select repeated_versions.*, {{ link_attribution.version_rank(key, raw_columns) }} as _version_rank
    from repeated_versions
)

select
    ranked.*,
    {{ link_attribution.rejected_payload(raw_columns) }} as _raw_payload
from ranked
{%- endmacro %}

{#- The raw rows of one half: keys seen more than once (repeated) or the others, keyless rows included, each with
    its cleaned key (_version_key) and, with `visitor`, its user agent's and IP's lookup columns.

    The key is computed below the join: a join condition holding the junk-value IN list is no equi-join to DuckDB,
    which then joins by a cross product. The lookups are joined straight to the raw rows, before the split: DuckDB
    estimates the rows left after the split at one, and then builds its hash table on the 10M rows instead of on
    the lookup. Left joins keep the raw rows on the probe side; every raw value has its lookup entry. -#}
{% macro versions_src(relation, where, key_expr, repeated, visitor) -%}
    select keyed_rows.*
    from (
        select
            raw_rows.*,
            {%- if visitor %}
            {{ link_attribution.visitor_lookup_columns() }},
            {%- endif %}
            {{ key_expr }} as _version_key
        from {{ relation }} as raw_rows
        {%- if visitor %}
        {{ link_attribution.visitor_lookup_joins('raw_rows') }}
        {%- endif %}
        {{ link_attribution.where_clause(where) }}
    ) as keyed_rows
    left join repeated_keys on repeated_keys._repeated_key = keyed_rows._version_key
    where repeated_keys._repeated_key is {{ "not " if repeated }}null
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
{{ link_attribution.versions_of(relation, where, 'link_id', link_attribution.link_raw_columns(),
                                link_attribution.links_chain) }}
{% endmacro %}

{% macro link_raw_columns() -%}
    {{ return(['link_id', 'short_code', 'campaign_id', 'creator_id', 'channel', 'destination_url', 'created_at']) }}
{%- endmacro %}

{% macro links_chain(src) %}
with src as (
    {{ src }}
),

cleaned as (
    select
        _version_key as link_id,
        {{ link_attribution.clean_identifier('short_code') }} as short_code,
        {{ link_attribution.clean_identifier('campaign_id') }} as campaign_id,
        {{ link_attribution.clean_identifier('creator_id') }} as creator_id,
        lower({{ link_attribution.clean_identifier('channel') }}) as channel,
        {{ link_attribution.clean_text('destination_url') }} as destination_url,
        {{ link_attribution.clean_identifier('created_at') }} as _created_at_text,
        {{- link_attribution.carry_raw_columns(link_attribution.link_raw_columns()) }}
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
)

select * from validated
{% endmacro %}


{#- ------------------------------------------------------------------------------------- clicks --------- -#}
{% macro raw_clicks_versions(relation, where=none) %}
{{ link_attribution.versions_of(relation, where, 'click_id', link_attribution.click_raw_columns(),
                                link_attribution.clicks_chain, visitor=true) }}
{% endmacro %}

{% macro click_raw_columns() -%}
    {{ return(['click_id', 'link_id', 'clicked_at', 'ip', 'user_agent', 'referrer', 'cookie_id', 'session_id',
               'device_fingerprint', 'user_id', 'email']) }}
{%- endmacro %}

{% macro clicks_chain(src) %}
with src as (
    {{ src }}
),

cleaned as (
    select
        _version_key as click_id,
        {{ link_attribution.clean_identifier('link_id') }} as link_id,
        {{ link_attribution.clean_identifier('clicked_at') }} as _clicked_at_text,
        {{ link_attribution.clean_text(link_attribution.clean_identifier('referrer'), 2000) }} as referrer,
        {{ link_attribution.visitor_fields_cleaned() }},
        {{- link_attribution.carry_raw_columns(link_attribution.click_raw_columns()) }}
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

validated as (
    select
        enriched.*,
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
    from enriched
    {{ link_attribution.stage_fence() }}
)

select * from validated
{% endmacro %}


{#- -------------------------------------------------------------------------------- conversions --------- -#}
{% macro raw_conversions_versions(relation, where=none) %}
{{ link_attribution.versions_of(relation, where, 'conversion_id', link_attribution.conversion_raw_columns(),
                                link_attribution.conversions_chain, visitor=true) }}
{% endmacro %}

{% macro conversion_raw_columns() -%}
    {{ return(['conversion_id', 'converted_at', 'event_type', 'revenue', 'currency', 'user_id', 'email',
               'cookie_id', 'session_id', 'device_fingerprint', 'ip', 'user_agent', 'click_id']) }}
{%- endmacro %}

{% macro conversions_chain(src) %}
{%- set max_revenue = var('max_revenue') | float -%}
with src as (
    {{ src }}
),

cleaned as (
    select
        _version_key as conversion_id,
        {{ link_attribution.clean_identifier('converted_at') }} as _converted_at_text,
        lower({{ link_attribution.clean_identifier('event_type') }}) as event_type,
        {#- Only an empty revenue means "no revenue": 'NaN', 'null' or '-' in a money column is a defect. -#}
        {{ link_attribution.clean_text('revenue') }} as _revenue_text,
        upper({{ link_attribution.clean_identifier('currency') }}) as _currency,
        {{ link_attribution.clean_identifier('click_id') }} as direct_click_id,
        {{ link_attribution.visitor_fields_cleaned() }},
        {{- link_attribution.carry_raw_columns(link_attribution.conversion_raw_columns()) }}
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

validated as (
    select
        enriched.*,
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
    from enriched
    {{ link_attribution.stage_fence() }}
)

select * from validated
{% endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    Visitor fields, identical on clicks and conversions: browser identifiers, user, email, IP and user agent.

    User agents and IPs repeat across rows (10M clicks carry ~400 distinct user agents and ~3M distinct IPs), and
    their parsing is the costly part of staging (~70 patterns per user agent, a regex, two SHA-256 and the network
    ranges per IP). So each distinct raw value is parsed once, in visitor_lookups, and the raw rows join their
    value's result back (visitor_lookup_joins, in versions_src) on the raw text; '' and null share the key ''
    (both clean to null). The lookups read the source's own rows with the same predicate as the rows they serve,
    so every row finds exactly one entry.
--------------------------------------------------------------------------------------------------------- -#}
{% macro visitor_fields_cleaned() -%}
        {{ link_attribution.clean_identifier('cookie_id') }} as cookie_id,
        {{ link_attribution.clean_identifier('session_id') }} as session_id,
        {{ link_attribution.clean_identifier('device_fingerprint') }} as device_fingerprint,
        {{ link_attribution.clean_identifier('user_id') }} as user_id,
        {{ link_attribution.email_candidate('email') }} as _email_candidate,
        _parsed_user_agent as user_agent,
        _ua_bot_reason,
        os_family,
        browser,
        device_family,
        in_app_browser,
        ip_hash,
        ip_network_hash,
        is_datacenter_ip
{%- endmacro %}

{% macro visitor_fields_normalised() -%}
        {{ link_attribution.normalize_email('_email_candidate') }} as _email
{%- endmacro %}

{% macro visitor_fields_enriched() -%}
        {{ link_attribution.hash_pii('_email') }} as email_hash
{%- endmacro %}

{#- What a raw row takes from the lookups (the raw user_agent column keeps its name, so the parsed one is renamed). -#}
{% macro visitor_lookup_columns() -%}
            user_agents.user_agent as _parsed_user_agent,
            user_agents._ua_bot_reason,
            user_agents.os_family,
            user_agents.browser,
            user_agents.device_family,
            user_agents.in_app_browser,
            ips.ip_hash,
            ips.ip_network_hash,
            ips.is_datacenter_ip
{%- endmacro %}

{% macro visitor_lookup_joins(rows) -%}
        left join user_agents on user_agents._user_agent_key = coalesce({{ rows }}.user_agent, '')
        left join ips on ips._ip_key = coalesce({{ rows }}.ip, '')
{%- endmacro %}

{#- The CTEs user_agents (_user_agent_key -> user_agent and its classification) and ips (_ip_key -> hashes and the
    datacenter flag), over the distinct raw values of `relation` where `where`. -#}
{% macro visitor_lookups(relation, where) -%}
user_agent_values as (
    select distinct coalesce(user_agent, '') as _user_agent_key
    from {{ relation }}
    {{ link_attribution.where_clause(where) }}
),

user_agent_cleaned as (
    select
        _user_agent_key,
        left({{ link_attribution.clean_identifier('_user_agent_key') }}, {{ var('user_agent_max_length') | int }})
            as user_agent
    from user_agent_values
    {{ link_attribution.stage_fence() }}
),

user_agent_lowered as (
    select
        _user_agent_key,
        user_agent,
        lower(user_agent) as _ua
    from user_agent_cleaned
    {{ link_attribution.stage_fence() }}
),

user_agent_parsed as (
    select
        user_agent_lowered.*,
        {{ link_attribution.ua_bot_reason('_ua') }} as _ua_bot_reason,
        {{ link_attribution.ua_os_family('_ua') }} as os_family,
        {{ link_attribution.ua_browser('_ua') }} as browser
    from user_agent_lowered
    {{ link_attribution.stage_fence() }}
),

user_agents as materialized (
    select
        user_agent_parsed.*,
        {{ link_attribution.ua_device_family('_ua', '_ua_bot_reason') }} as device_family,
        {{ link_attribution.ua_in_app_browser('_ua', '_ua_bot_reason') }} as in_app_browser
    from user_agent_parsed
    {{ link_attribution.stage_fence() }}
),

ip_values as (
    select
        _ip_key,
        {{ link_attribution.ip_candidate('_ip_key') }} as _ip_candidate
    from (
        select distinct coalesce(ip, '') as _ip_key
        from {{ relation }}
        {{ link_attribution.where_clause(where) }}
    ) as distinct_ips
    {{ link_attribution.stage_fence() }}
),

ip_normalised as (
    select
        _ip_key,
        {{ link_attribution.normalize_ip('_ip_candidate') }} as _ip
    from ip_values
    {{ link_attribution.stage_fence() }}
),

ip_enriched as (
    select
        _ip_key,
        _ip,
        {{ link_attribution.hash_pii('_ip') }} as ip_hash,
        {{ link_attribution.hash_pii(link_attribution.ip_network('_ip')) }} as ip_network_hash,
        {{ link_attribution.ipv4_to_bigint('_ip') }} as _ip_int
    from ip_normalised
    {{ link_attribution.stage_fence() }}
),

ips as materialized (
    select
        _ip_key,
        ip_hash,
        ip_network_hash,
        {{ link_attribution.is_datacenter_ip('_ip_int', '_ip') }} as is_datacenter_ip
    from ip_enriched
    {{ link_attribution.stage_fence() }}
)
{%- endmacro %}


{#- unstaged_raw_rows(relation, staged, key): the raw rows whose cleaned key is not in the staged model, keyless
    rows included (rejected_rows' input). The key is computed below the join, as in versions_src. -#}
{% macro unstaged_raw_rows(relation, staged, key) -%}
    select keyed_rows.*
    from (
        select raw_rows.*, {{ link_attribution.clean_identifier(key) }} as _unstaged_key
        from {{ relation }} as raw_rows
    ) as keyed_rows
    left join {{ staged }} as staged on staged.{{ key }} = keyed_rows._unstaged_key
    where staged.{{ key }} is null
{%- endmacro %}
