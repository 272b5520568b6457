{#- One row per click: typed, normalised, PII-hashed and bot-flagged (row-level rules). Incremental: a run reads
    only the raw loads newer than the newest staged row and replaces the keys it sees (delete+insert), which gives
    the same table as a full refresh because of the version ranking documented in raw_clicks_versions. -#}
{{
    config(
        materialized='incremental',
        unique_key='click_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with versions as (
    {{ raw_clicks_versions(
        source('raw', 'clicks'),
        where=loaded_after_watermark(this) if is_incremental() else none
    ) }}
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
    from versions
    where _version_rank = 1 and _reject_reason is null
)

select * from final
