{#- One row per link: the valid winner among the delivered versions of each link_id (macro version_rank says
    which). A table rebuilt every run: links are few, and int_clicks reads them whole. #}
{%- set raw_columns = ['link_id', 'short_code', 'campaign_id', 'creator_id', 'channel', 'destination_url',
                       'created_at'] %}

with

{#- Import. Not materialized: repeated_keys and both halves read it, and each is better off scanning raw
    than waiting for a copy of every raw row to be written. #}
raw_links as not materialized (
    select *
    from {{ source('raw', 'links') }}
),

{#- Ranking needs a window over the versions of each key, and a window materialises every column of every row it
    sees. Yet nearly every key arrives once. So the keys delivered more than once are found first (a narrow
    GROUP BY on the cleaned key), the stages below run twice (the loop writes them once), over the rows of those
    keys (`repeated_*`) and over the others (`single_*`, keyless rows included), and only the repeated ones are
    ranked by a window. The result is the same as ranking every row. #}
repeated_keys as materialized (
    select {{ clean_identifier('link_id') }} as _repeated_key
    from raw_links
    group by 1
    having count(*) > 1
),

{#- The key is cleaned here, below the join to repeated_keys: a join condition holding the junk-value IN list is
    no equi-join to DuckDB, which then joins by a cross product. #}
raw_links_keyed as not materialized (
    select
        *,
        {{ clean_identifier('link_id') }} as _link_key
    from raw_links
),

{%- for half in ['single', 'repeated'] %}

{{ half }}_rows as (
    select raw_links_keyed.*
    from raw_links_keyed
    left join repeated_keys on repeated_keys._repeated_key = raw_links_keyed._link_key
    where repeated_keys._repeated_key is {{ 'not ' if half == 'repeated' }}null
),

{{ half }}_cleaned as (
    select
        _link_key as link_id,
        {{ clean_identifier('short_code') }} as short_code,
        {{ clean_identifier('campaign_id') }} as campaign_id,
        {{ clean_identifier('creator_id') }} as creator_id,
        lower({{ clean_identifier('channel') }}) as channel,
        {{ clean_text('destination_url') }} as destination_url,
        {{ clean_identifier('created_at') }} as _created_at_text,
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
        {{ safe_cast_timestamptz('_created_at_text') }} as created_at
    from {{ half }}_cleaned
    {{ stage_fence() }}
),

{{ half }}_validated as (
    select
        {{ half }}_typed.*,
        {{ link_reject_reason() }} as _reject_reason
    from {{ half }}_typed
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
        {{ version_rank('link_id', raw_columns) }} as _version_rank
    from repeated_validated
),

final as (
    select
        link_id,
        short_code,
        campaign_id,
        creator_id,
        channel,
        destination_url,
        created_at,
        _loaded_at
    from deduplicated
    where _version_rank = 1 and _reject_reason is null
)

select * from final
