{#- One row per link: the valid winner among the delivered versions of each link_id (see raw_links_versions).
    A table rebuilt every run: links are few, and int_clicks reads them whole. -#}
with versions as (
    {{ raw_links_versions(source('raw', 'links')) }}
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
    from versions
    where _version_rank = 1 and _reject_reason is null
)

select * from final
