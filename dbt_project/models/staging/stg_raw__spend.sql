{#- One row per entity, day and currency: the valid winner among the delivered versions of each spend row (macro
    spend_versions; a later load corrects an earlier one). Exactly one of link_id, campaign_id, creator_id and
    channel is set (entity_type names it). A table rebuilt every run: spend is a few rows per entity and day, and a
    warehouse that never received a spend file has an empty raw.spend and so an empty table here. #}

with

versions as (
    {{ spend_versions() }}
),

final as (
    select
        spend_id,
        spend_date,
        entity_type,
        link_id,
        campaign_id,
        creator_id,
        channel,
        amount,
        currency,
        _loaded_at
    from versions
    where _version_rank = 1 and _reject_reason is null
)

select * from final
