{#- One row per conversion: typed (revenue numeric(18, 2)), normalised and PII-hashed. Incremental like
    stg_raw__clicks, and for the same reason equal to a full refresh. -#}
{{
    config(
        materialized='incremental',
        unique_key='conversion_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with versions as (
    {{ raw_conversions_versions(
        source('raw', 'conversions'),
        where=loaded_after_watermark(this) if is_incremental() else none
    ) }}
),

final as (
    select
        conversion_id,
        converted_at,
        converted_date,
        event_type,
        revenue,
        currency,
        user_id,
        email_hash,
        cookie_id,
        session_id,
        device_fingerprint,
        ip_hash,
        ip_network_hash,
        is_datacenter_ip,
        user_agent,
        device_family,
        os_family,
        browser,
        in_app_browser,
        direct_click_id,
        _loaded_at
    from versions
    where _version_rank = 1 and _reject_reason is null
)

select * from final
