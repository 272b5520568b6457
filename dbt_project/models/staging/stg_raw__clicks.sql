{#- One row per click: typed, normalised, PII-hashed and bot-flagged (row-level rules). Incremental: a run reads
    only the raw loads newer than the newest staged row and replaces the keys it sees (delete+insert), which gives
    the same table as a full refresh because of the version ranking (macro version_rank says why). #}
{#- Indexes (PostgreSQL): the keys of dbt's delete and of int_clicks' lookups, re-delivered links' clicks, new loads.
    None on ip_hash: int_clicks' burst context reads an IP's clicks faster through one, but keeping a 1 GB index of
    random keys up cost 18 s of each hourly insert at 10M clicks, and the staging step 20 s in all. #}
{{
    config(
        **incremental_config('click_id', 'fail', indexes=[
            {'columns': ['click_id']},
            {'columns': ['link_id']},
            {'columns': ['_loaded_at']},
        ])
    )
}}
{%- set raw_columns = ['click_id', 'link_id', 'clicked_at', 'ip', 'user_agent', 'referrer', 'cookie_id', 'session_id',
                       'device_fingerprint', 'user_id', 'email'] %}

with

{#- Import. Not materialized: repeated_keys, the lookups and both halves read it, and each is better off scanning raw
    than waiting for a copy of every raw row to be written. #}
raw_clicks as not materialized (
    select *
    from {{ source('raw', 'clicks') }}
    {%- if is_incremental() %}
    where {{ loaded_after_watermark(this) }}
    {%- endif %}
),

{#- Ranking needs a window over the versions of each key, and a window materialises every column of every row it
    sees (at 10M clicks, ~5 GB of wide rows spilled to disk: half of staging's time). Yet nearly every key arrives
    once. So the keys delivered more than once are found first (a narrow GROUP BY on the cleaned key), the stages
    below run twice (the loop writes them once), over the rows of those keys (`repeated_*`) and over the others
    (`single_*`, keyless rows included), and only the repeated ones are ranked by a window. The result is the
    same as ranking every row. #}
repeated_keys as materialized (
    select {{ clean_identifier('click_id') }} as _repeated_key
    from raw_clicks
    group by 1
    having count(*) > 1
),

{#- User agents and IPs repeat across rows (10M clicks carry ~400 distinct user agents and ~3M distinct IPs), and
    their parsing is the costly part of staging (~70 patterns per user agent, a regex, two SHA-256 and the network
    ranges per IP). So each distinct raw value is parsed once here, and the raw rows join their value's result
    back on the raw text; '' and null share the key '' (both clean to null). The lookups read the same rows as
    the rows they serve, so every row finds exactly one entry. #}
user_agent_values as (
    select distinct coalesce(user_agent, '') as _user_agent_key
    from raw_clicks
),

user_agent_cleaned as (
    select
        _user_agent_key,
        left({{ clean_identifier('_user_agent_key') }}, {{ var('user_agent_max_length') | int }}) as user_agent
    from user_agent_values
    {{ stage_fence() }}
),

user_agent_lowered as (
    select
        _user_agent_key,
        user_agent,
        lower(user_agent) as _ua
    from user_agent_cleaned
    {{ stage_fence() }}
),

user_agent_parsed as (
    select
        user_agent_lowered.*,
        {{ ua_bot_reason('_ua') }} as _ua_bot_reason,
        {{ ua_os_family('_ua') }} as os_family,
        {{ ua_browser('_ua') }} as browser
    from user_agent_lowered
    {{ stage_fence() }}
),

user_agents as materialized (
    select
        user_agent_parsed.*,
        {{ ua_device_family('_ua', '_ua_bot_reason') }} as device_family,
        {{ ua_in_app_browser('_ua', '_ua_bot_reason') }} as in_app_browser
    from user_agent_parsed
    {{ stage_fence() }}
),

ip_values as (
    select
        _ip_key,
        lower({{ clean_identifier('_ip_key') }}) as _ip_text
    from (select distinct coalesce(ip, '') as _ip_key from raw_clicks) as distinct_ips
    {{ stage_fence() }}
),

ip_candidates as (
    select
        _ip_key,
        {{ ip_candidate('_ip_text') }} as _ip_candidate
    from ip_values
    {{ stage_fence() }}
),

ip_normalised as (
    select
        _ip_key,
        {{ normalize_ip('_ip_candidate') }} as _ip_valid
    from ip_candidates
    {{ stage_fence() }}
),

{#- Every spelling of one address (IPv4-mapped, expanded or compressed IPv6) becomes one text before it is hashed. #}
ip_hexed as (
    select
        _ip_key,
        {{ ipv6_embedded_ipv4_as_hex('_ip_valid') }} as _ip_hexed
    from ip_normalised
    {{ stage_fence() }}
),

ip_expanded as (
    select
        _ip_key,
        {{ ipv6_expand('_ip_hexed') }} as _ip_expanded
    from ip_hexed
    {{ stage_fence() }}
),

ip_canonical as (
    select
        _ip_key,
        {{ ip_canonical('_ip_expanded') }} as _ip
    from ip_expanded
    {{ stage_fence() }}
),

ip_enriched as (
    select
        _ip_key,
        _ip,
        {{ hash_pii('_ip') }} as ip_hash,
        {{ hash_pii(ip_network('_ip')) }} as ip_network_hash,
        {{ ipv4_to_bigint('_ip') }} as _ip_int
    from ip_canonical
    {{ stage_fence() }}
),

ips as materialized (
    select
        _ip_key,
        ip_hash,
        ip_network_hash,
        {{ is_datacenter_ip('_ip_int', '_ip') }} as is_datacenter_ip
    from ip_enriched
    {{ stage_fence() }}
),

{#- The lookups are joined straight to the raw rows, before the split into halves: DuckDB estimates the rows left
    after the split at one, and then builds its hash table on the 10M rows instead of on the lookup. Left joins
    keep the raw rows on the probe side; every raw value has its lookup entry. The key is cleaned here too, below
    the join to repeated_keys: a join condition holding the junk-value IN list is no equi-join to DuckDB, which then
    joins by a cross product. #}
raw_clicks_looked_up as not materialized (
    select
        raw_clicks.*,
        user_agents.user_agent as _parsed_user_agent,
        user_agents._ua_bot_reason,
        user_agents.os_family,
        user_agents.browser,
        user_agents.device_family,
        user_agents.in_app_browser,
        ips.ip_hash,
        ips.ip_network_hash,
        ips.is_datacenter_ip,
        {{ clean_identifier('click_id') }} as _click_key
    from raw_clicks
    left join user_agents on user_agents._user_agent_key = coalesce(raw_clicks.user_agent, '')
    left join ips on ips._ip_key = coalesce(raw_clicks.ip, '')
),

{%- for half in ['single', 'repeated'] %}

{{ half }}_rows as (
    select raw_clicks_looked_up.*
    from raw_clicks_looked_up
    left join repeated_keys on repeated_keys._repeated_key = raw_clicks_looked_up._click_key
    where repeated_keys._repeated_key is {{ 'not ' if half == 'repeated' }}null
),

{{ half }}_cleaned as (
    select
        _click_key as click_id,
        {{ clean_identifier('link_id') }} as link_id,
        {{ clean_identifier('clicked_at') }} as _clicked_at_text,
        {{ clean_text(clean_identifier('referrer'), 2000) }} as referrer,
        {{ clean_identifier('cookie_id') }} as cookie_id,
        {{ clean_identifier('session_id') }} as session_id,
        {{ clean_identifier('device_fingerprint') }} as device_fingerprint,
        {{ clean_identifier('user_id') }} as user_id,
        lower({{ clean_identifier('email') }}) as _email_candidate,
        _parsed_user_agent as user_agent,
        _ua_bot_reason,
        os_family,
        browser,
        device_family,
        in_app_browser,
        ip_hash,
        ip_network_hash,
        is_datacenter_ip,
        {%- for column in raw_columns %}
        {{ column }} as _raw_{{ column }},
        {%- endfor %}
        _source_file,
        _loaded_at
    from {{ half }}_rows
    {{ stage_fence() }}
),

{{ half }}_typed as (
    select
        {{ half }}_cleaned.*,
        {{ safe_cast_timestamptz('_clicked_at_text') }} as clicked_at,
        {{ normalize_email('_email_candidate') }} as _email
    from {{ half }}_cleaned
    {{ stage_fence() }}
),

{{ half }}_enriched as (
    select
        {{ half }}_typed.*,
        {{ utc_date('clicked_at') }} as clicked_date,
        {{ hash_pii('_email') }} as email_hash
    from {{ half }}_typed
    {{ stage_fence() }}
),

{#- Row-level bot rules; behavioural ones (bursts, preview timing) are added by int_clicks. #}
{{ half }}_validated as (
    select
        {{ half }}_enriched.*,
        coalesce(_ua_bot_reason, case when is_datacenter_ip then 'datacenter_ip' end) as bot_reason,
        (_ua_bot_reason is not null or is_datacenter_ip) as is_bot,
        {#- A row of an erased person (attribution forget) is dropped whatever else it holds. #}
        coalesce({{ suppressed_reason('email_hash', 'user_id', 'cookie_id') }}, {{ click_reject_reason() }}) as _reject_reason
    from {{ half }}_enriched
    {{ stage_fence() }}
),
{%- endfor %}

deduplicated as (
    select
        single_validated.*,
        1 as _version_rank
    from single_validated
    union all
    select
        repeated_validated.*,
        {{ version_rank('click_id', raw_columns) }} as _version_rank
    from repeated_validated
),

final as (
    select
        click_id,
        link_id,
        clicked_at,
        clicked_date,
        ip_hash,
        ip_network_hash,
        is_datacenter_ip,
        user_agent,
        device_family,
        os_family,
        browser,
        in_app_browser,
        referrer,
        cookie_id,
        session_id,
        device_fingerprint,
        user_id,
        email_hash,
        is_bot,
        bot_reason,
        _loaded_at
    from deduplicated
    where _version_rank = 1 and _reject_reason is null
)

select * from final
