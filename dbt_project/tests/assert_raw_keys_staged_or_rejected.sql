{#- Count invariant of staging, per raw table: every distinct raw key (cleaned like staging cleans it) is staged or
    quarantined, never both, never twice; every raw row without a key is quarantined on its own.
    Returns one row per table that breaks it. -#}
{%- set tables = [
    ('links', 'link_id', 'stg_raw__links'),
    ('clicks', 'click_id', 'stg_raw__clicks'),
    ('conversions', 'conversion_id', 'stg_raw__conversions'),
] %}

with
{%- for table, key, model in tables %}
raw_{{ table }} as (
    select {{ clean_identifier(key) }} as record_key
    from {{ source('raw', table) }}
),

rejected_{{ table }} as (
    select record_key
    from {{ ref('rejected_rows') }}
    where source_table = '{{ table }}'
),

counts_{{ table }} as (
    select
        '{{ table }}' as source_table,
        (select count(distinct record_key) from raw_{{ table }}) as raw_keys,
        (select count(*) from {{ ref(model) }}) as staged_rows,
        (select count(*) from rejected_{{ table }} where record_key is not null) as rejected_keyed_rows,
        (select count(*) from raw_{{ table }} where record_key is null) as raw_rows_without_key,
        (select count(*) from rejected_{{ table }} where record_key is null) as rejected_rows_without_key,
        (
            select count(*)
            from {{ ref(model) }} as staged
            inner join rejected_{{ table }} as rejected on rejected.record_key = staged.{{ key }}
        ) as keys_in_both
),
{%- endfor %}

all_counts as (
    {%- for table, key, model in tables %}
    select * from counts_{{ table }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select *
from all_counts
where raw_keys <> staged_rows + rejected_keyed_rows
    or raw_rows_without_key <> rejected_rows_without_key
    or keys_in_both > 0
