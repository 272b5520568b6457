{#- The quarantine: one row per raw key whose every version is unusable (its best version's reason), plus one row
    per raw row without a key. Rebuilt from raw on every run, so a key that later arrives in a valid version
    leaves the quarantine as it enters its staged table; the singular test assert_raw_keys_staged_or_rejected
    checks that every raw key is in exactly one of the two. -#}
{%- set tables = [('links', 'link_id'), ('clicks', 'click_id'), ('conversions', 'conversion_id')] %}

with links as (
    {{ raw_links_versions(source('raw', 'links')) }}
),

clicks as (
    {{ raw_clicks_versions(source('raw', 'clicks')) }}
),

conversions as (
    {{ raw_conversions_versions(source('raw', 'conversions')) }}
),

rejected as (
    {%- for table, key in tables %}
    select
        '{{ table }}' as source_table,
        {{ key }} as record_key,
        _reject_reason as reason,
        _raw_payload as raw_payload,
        _loaded_at
    from {{ table }}
    where _reject_reason is not null and (_version_rank = 1 or {{ key }} is null)
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from rejected
