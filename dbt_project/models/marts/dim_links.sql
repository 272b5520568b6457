{#- One row per tracking link with the creator, campaign and channel it belongs to: the dimension that lets BI and
    the semantic layer go from a link to its creator or campaign. -#}

with

links as (

    select * from {{ ref('stg_raw__links') }}

),

final as (

    select
        cast(link_id as text) as link_id,
        cast(creator_id as text) as creator_id,
        cast(campaign_id as text) as campaign_id,
        cast(channel as text) as channel,
        cast(short_code as text) as short_code,
        cast(created_at as timestamp with time zone) as created_at
    from links

)

select * from final
