{#- The quarantine: one row per raw key whose every version is unusable (its best version's reason), plus one row
    per raw row without a key. Rebuilt from raw on every run, so a key that later arrives in a valid version
    leaves the quarantine as it enters its staged table; the singular test assert_raw_keys_staged_or_rejected
    checks that every raw key is in exactly one of the two.

    A key is quarantined exactly when its staged model does not hold it (a valid version always wins the ranking),
    so only the raw rows of unstaged keys and keyless rows go through the staging pipeline here: ranking them among
    themselves picks the same best version as ranking every row would, at the cost of an anti-join instead of a
    second pass over every raw row. -#}
{%- set tables = [('links', 'link_id', 'stg_raw__links'), ('clicks', 'click_id', 'stg_raw__clicks'),
                  ('conversions', 'conversion_id', 'stg_raw__conversions')] %}

with
{%- for table, key, model in tables %}
unstaged_{{ table }} as materialized (
    {{ unstaged_raw_rows(source('raw', table), ref(model), key) }}
),
{%- endfor %}

links as (
    {{ raw_links_versions('unstaged_links') }}
),

clicks as (
    {{ raw_clicks_versions('unstaged_clicks') }}
),

conversions as (
    {{ raw_conversions_versions('unstaged_conversions') }}
),

rejected as (
    {%- for table, key, model in tables %}
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
