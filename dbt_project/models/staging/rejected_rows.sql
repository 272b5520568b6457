{#- The quarantine: one row per raw key whose every version is unusable (its best version's reason), plus one row
    per raw row without a key. Rebuilt from raw on every run, so a key that later arrives in a valid version
    leaves the quarantine as it enters its staged table; the singular test assert_raw_keys_staged_or_rejected
    checks that every raw key is in exactly one of the two.

    A key is quarantined exactly when its staged model does not hold it (a valid version always wins the ranking),
    so only the raw rows of unstaged keys and keyless rows are read here: ranking them among themselves picks the
    same best version as ranking every row would, at the cost of an anti-join instead of a second pass over every
    raw row. They are few, so every one of them goes through the window. The reasons and the ranking are the
    staged models' own (macros link_reject_reason, click_reject_reason, conversion_reject_reason, fx_rate_versions,
    spend_versions, version_rank),
    computed from the same cleaned columns. #}
{%- set raw_columns = {
    'links': ['link_id', 'short_code', 'campaign_id', 'creator_id', 'channel', 'destination_url', 'created_at'],
    'clicks': ['click_id', 'link_id', 'clicked_at', 'ip', 'user_agent', 'referrer', 'cookie_id', 'session_id',
               'device_fingerprint', 'user_id', 'email'],
    'conversions': ['conversion_id', 'converted_at', 'event_type', 'revenue', 'currency', 'user_id', 'email',
                    'cookie_id', 'session_id', 'device_fingerprint', 'ip', 'user_agent', 'click_id'],
    'fx_rates': ['rate_date', 'currency', 'rate'],
    'spend': ['spend_date', 'link_id', 'campaign_id', 'creator_id', 'channel', 'amount', 'currency'],
} %}

with

{#- The key is cleaned below the anti-join, as in the staged models: a join condition holding the junk-value IN list
    is no equi-join to DuckDB. #}
unstaged_links as (
    select raw_links.*
    from (
        select
            *,
            {{ clean_identifier('link_id') }} as _link_key
        from {{ source('raw', 'links') }}
    ) as raw_links
    left join {{ ref('stg_raw__links') }} as staged on staged.link_id = raw_links._link_key
    where staged.link_id is null
),

unstaged_clicks as (
    select raw_clicks.*
    from (
        select
            *,
            {{ clean_identifier('click_id') }} as _click_key
        from {{ source('raw', 'clicks') }}
    ) as raw_clicks
    left join {{ ref('stg_raw__clicks') }} as staged on staged.click_id = raw_clicks._click_key
    where staged.click_id is null
),

unstaged_conversions as (
    select raw_conversions.*
    from (
        select
            *,
            {{ clean_identifier('conversion_id') }} as _conversion_key
        from {{ source('raw', 'conversions') }}
    ) as raw_conversions
    left join {{ ref('stg_raw__conversions') }} as staged on staged.conversion_id = raw_conversions._conversion_key
    where staged.conversion_id is null
),

{#- ------------------------------------------------------------------------------------------- links ------ #}
links_cleaned as (
    select
        _link_key as link_id,
        {{ clean_identifier('created_at') }} as _created_at_text,
        {%- for column in raw_columns['links'] %}
        {{ column }} as _raw_{{ column }},
        {%- endfor %}
        _source_file,
        _loaded_at
    from unstaged_links
    {{ stage_fence() }}
),

links_typed as (
    select
        links_cleaned.*,
        {{ safe_cast_timestamptz('_created_at_text') }} as created_at
    from links_cleaned
    {{ stage_fence() }}
),

links_validated as (
    select
        links_typed.*,
        {{ link_reject_reason() }} as _reject_reason
    from links_typed
    {{ stage_fence() }}
),

links_ranked as (
    select
        links_validated.*,
        {{ version_rank('link_id', raw_columns['links']) }} as _version_rank
    from links_validated
),

{#- ------------------------------------------------------------------------------------------ clicks ------ #}
clicks_cleaned as (
    select
        _click_key as click_id,
        {{ clean_identifier('link_id') }} as link_id,
        {{ clean_identifier('clicked_at') }} as _clicked_at_text,
        {{ clean_identifier('user_id') }} as user_id,
        {{ clean_identifier('cookie_id') }} as cookie_id,
        lower({{ clean_identifier('email') }}) as _email_candidate,
        {%- for column in raw_columns['clicks'] %}
        {{ column }} as _raw_{{ column }},
        {%- endfor %}
        _source_file,
        _loaded_at
    from unstaged_clicks
    {{ stage_fence() }}
),

clicks_typed as (
    select
        clicks_cleaned.*,
        {{ safe_cast_timestamptz('_clicked_at_text') }} as clicked_at,
        {{ normalize_email('_email_candidate') }} as _email
    from clicks_cleaned
    {{ stage_fence() }}
),

clicks_enriched as (
    select
        clicks_typed.*,
        {{ hash_pii('_email') }} as email_hash
    from clicks_typed
    {{ stage_fence() }}
),

clicks_validated as (
    select
        clicks_enriched.*,
        coalesce({{ suppressed_reason('email_hash', 'user_id', 'cookie_id') }}, {{ click_reject_reason() }}) as _reject_reason
    from clicks_enriched
    {{ stage_fence() }}
),

clicks_ranked as (
    select
        clicks_validated.*,
        {{ version_rank('click_id', raw_columns['clicks']) }} as _version_rank
    from clicks_validated
),

clicks_rejected as (
    select
        clicks_ranked.*,
        lower({{ clean_identifier('_raw_ip') }}) as _ip_text
    from clicks_ranked
    where _reject_reason is not null and (_version_rank = 1 or click_id is null)
    {{ stage_fence() }}
),

clicks_normalised as (
    select
        clicks_rejected.*,
        {{ ip_candidate('_ip_text') }} as _ip_candidate
    from clicks_rejected
    {{ stage_fence() }}
),

clicks_ip_normalised as (
    select
        clicks_normalised.*,
        {{ normalize_ip('_ip_candidate') }} as _ip_valid
    from clicks_normalised
    {{ stage_fence() }}
),

clicks_ip_hexed as (
    select
        clicks_ip_normalised.*,
        {{ ipv6_embedded_ipv4_as_hex('_ip_valid') }} as _ip_hexed
    from clicks_ip_normalised
    {{ stage_fence() }}
),

clicks_ip_expanded as (
    select
        clicks_ip_hexed.*,
        {{ ipv6_expand('_ip_hexed') }} as _ip_expanded
    from clicks_ip_hexed
    {{ stage_fence() }}
),

clicks_ip_canonical as (
    select
        clicks_ip_expanded.*,
        {{ ip_canonical('_ip_expanded') }} as _ip
    from clicks_ip_expanded
    {{ stage_fence() }}
),

clicks_hashed as (
    select
        clicks_ip_canonical.*,
        {{ hash_pii('_ip') }} as ip_hash
    from clicks_ip_canonical
    {{ stage_fence() }}
),

{#- ------------------------------------------------------------------------------------- conversions ------ #}
conversions_cleaned as (
    select
        _conversion_key as conversion_id,
        {{ clean_identifier('converted_at') }} as _converted_at_text,
        lower({{ clean_identifier('event_type') }}) as event_type,
        {{ clean_text('revenue') }} as _revenue_text,
        upper({{ clean_identifier('currency') }}) as _currency,
        {{ clean_identifier('user_id') }} as user_id,
        {{ clean_identifier('cookie_id') }} as cookie_id,
        lower({{ clean_identifier('email') }}) as _email_candidate,
        {%- for column in raw_columns['conversions'] %}
        {{ column }} as _raw_{{ column }},
        {%- endfor %}
        _source_file,
        _loaded_at
    from unstaged_conversions
    {{ stage_fence() }}
),

conversions_typed as (
    select
        conversions_cleaned.*,
        {{ safe_cast_timestamptz('_converted_at_text') }} as converted_at,
        {{ safe_cast_numeric('_revenue_text') }} as _revenue_number,
        {{ normalize_email('_email_candidate') }} as _email
    from conversions_cleaned
    {{ stage_fence() }}
),

conversions_enriched as (
    select
        conversions_typed.*,
        {{ hash_pii('_email') }} as email_hash
    from conversions_typed
    {{ stage_fence() }}
),

conversions_validated as (
    select
        conversions_enriched.*,
        coalesce({{ suppressed_reason('email_hash', 'user_id', 'cookie_id') }}, {{ conversion_reject_reason() }}) as _reject_reason
    from conversions_enriched
    {{ stage_fence() }}
),

conversions_ranked as (
    select
        conversions_validated.*,
        {{ version_rank('conversion_id', raw_columns['conversions']) }} as _version_rank
    from conversions_validated
),

conversions_rejected as (
    select
        conversions_ranked.*,
        lower({{ clean_identifier('_raw_ip') }}) as _ip_text
    from conversions_ranked
    where _reject_reason is not null and (_version_rank = 1 or conversion_id is null)
    {{ stage_fence() }}
),

conversions_normalised as (
    select
        conversions_rejected.*,
        {{ ip_candidate('_ip_text') }} as _ip_candidate
    from conversions_rejected
    {{ stage_fence() }}
),

conversions_ip_normalised as (
    select
        conversions_normalised.*,
        {{ normalize_ip('_ip_candidate') }} as _ip_valid
    from conversions_normalised
    {{ stage_fence() }}
),

conversions_ip_hexed as (
    select
        conversions_ip_normalised.*,
        {{ ipv6_embedded_ipv4_as_hex('_ip_valid') }} as _ip_hexed
    from conversions_ip_normalised
    {{ stage_fence() }}
),

conversions_ip_expanded as (
    select
        conversions_ip_hexed.*,
        {{ ipv6_expand('_ip_hexed') }} as _ip_expanded
    from conversions_ip_hexed
    {{ stage_fence() }}
),

conversions_ip_canonical as (
    select
        conversions_ip_expanded.*,
        {{ ip_canonical('_ip_expanded') }} as _ip
    from conversions_ip_expanded
    {{ stage_fence() }}
),

conversions_hashed as (
    select
        conversions_ip_canonical.*,
        {{ hash_pii('_ip') }} as ip_hash
    from conversions_ip_canonical
    {{ stage_fence() }}
),

{#- ---------------------------------------------------------------------------------------------- fx_rates ------ #}
{#- Few rows: the shared macro ranks them all, and the unusable best versions (and keyless rows) are the quarantine. #}
fx_rates_rejected as (
    select *
    from ({{ fx_rate_versions() }}) as versions
    where _reject_reason is not null and (_version_rank = 1 or fx_rate_id is null)
),

{#- ------------------------------------------------------------------------------------------------- spend ------ #}
{#- Few rows, as the rates: the shared macro ranks them all. #}
spend_rejected as (
    select *
    from ({{ spend_versions() }}) as versions
    where _reject_reason is not null and (_version_rank = 1 or spend_id is null)
),

{#- raw_payload: every raw column as delivered plus _source_file, except email and ip, which appear only as the same
    salted hashes the staged tables carry (raw PII stays in schema raw). #}
rejected as (
    {%- for table, key, rows in [('links', 'link_id', 'links_ranked'), ('clicks', 'click_id', 'clicks_hashed'),
                                 ('conversions', 'conversion_id', 'conversions_hashed'),
                                 ('fx_rates', 'fx_rate_id', 'fx_rates_rejected'),
                                 ('spend', 'spend_id', 'spend_rejected')] %}
    {%- set payload = [] %}
    {%- for column in raw_columns[table] if column not in ('email', 'ip') %}
        {%- do payload.append((column, '_raw_' ~ column)) %}
    {%- endfor %}
    {%- do payload.append(('_source_file', '_source_file')) %}
    {%- if table in ('clicks', 'conversions') %}
        {%- do payload.extend([('email_hash', 'email_hash'), ('ip_hash', 'ip_hash')]) %}
    {%- endif %}
    select
        '{{ table }}' as source_table,
        {{ key }} as record_key,
        _reject_reason as reason,
        {%- if table == 'links' %}
        {{ json_object(payload) }} as raw_payload,
        {%- else %}
        {#- An erased person's re-delivered row keeps nothing but where it came from. #}
        case
            when _reject_reason = 'suppressed' then {{ json_object([('_source_file', '_source_file')]) }}
            else {{ json_object(payload) }}
        end as raw_payload,
        {%- endif %}
        _loaded_at
    from {{ rows }}
    {%- if table == 'links' %}
    where _reject_reason is not null and (_version_rank = 1 or {{ key }} is null)
    {%- endif %}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from rejected
