{#- One row per staged click, with its link's attributes and the final bot decision: the row-level rules of
    staging (user agent, datacenter IP, ...) plus two behavioural rules that need other rows (staging's macro
    bot_behaviour_flags):
      burst               bot_burst_clicks or more clicks from one IP within bot_burst_window_seconds;
      preview_after_post  a click within bot_preview_seconds of the link's creation (link unfurlers, previews).
    A row-level reason from staging wins over the behavioural ones. -#}

with

clicks as not materialized (

    select * from {{ ref('stg_raw__clicks') }}

),

links as (

    select * from {{ ref('stg_raw__links') }}

),

clicks_with_links as (

    select
        clicks.click_id,
        clicks.link_id,
        clicks.clicked_at,
        clicks.clicked_date,
        clicks.ip_hash,
        clicks.ip_network_hash,
        clicks.is_datacenter_ip,
        clicks.user_agent,
        clicks.device_family,
        clicks.os_family,
        clicks.browser,
        clicks.in_app_browser,
        clicks.referrer,
        clicks.cookie_id,
        clicks.session_id,
        clicks.device_fingerprint,
        clicks.user_id,
        clicks.email_hash,
        links.campaign_id,
        links.creator_id,
        links.channel,
        links.created_at as link_created_at,
        links.link_id is not null as is_known_link,
        coalesce(clicks.is_bot, false) as is_bot_row_rule,
        case when coalesce(clicks.is_bot, false) then clicks.bot_reason end as row_bot_reason
    from clicks
    left join links
        on clicks.link_id = links.link_id

),

-- The behavioural rules (staging's macro bot_behaviour_flags) on the four columns they need, so the window passes
-- sort narrow rows instead of the wide click rows: every staged click counts, bots included (they share the IP).
click_times as (

    select
        clicks.click_id,
        clicks.ip_hash,
        clicks.clicked_at,
        links.created_at as link_created_at
    from clicks
    left join links
        on clicks.link_id = links.link_id

),

behaviour_flags as (

    {{ bot_behaviour_flags('click_times') }}

),

flagged as (

    select
        clicks_with_links.*,
        behaviour_flags.is_burst_bot,
        behaviour_flags.is_preview_bot
    from clicks_with_links
    inner join behaviour_flags
        on clicks_with_links.click_id = behaviour_flags.click_id

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
        campaign_id,
        creator_id,
        channel,
        link_created_at,
        is_known_link,
        is_bot_row_rule,
        is_burst_bot,
        is_preview_bot,
        is_bot_row_rule or is_burst_bot or is_preview_bot as is_bot,
        case
            when is_bot_row_rule then coalesce(row_bot_reason, 'row_rule')
            when is_burst_bot then 'burst'
            when is_preview_bot then 'preview_after_post'
        end as bot_reason
    from flagged

)

select * from final
