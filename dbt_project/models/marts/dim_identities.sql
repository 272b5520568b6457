{#- One row per resolved person (identity): when they were first and last seen and how many identifiers and
    devices the identity graph tied together. -#}

with

identity_profiles as (

    select * from {{ source('python', 'identity_profiles') }}

),

final as (

    select
        cast(identity_id as text) as identity_id,
        cast(first_seen_at as timestamp with time zone) as first_seen_at,
        cast(last_seen_at as timestamp with time zone) as last_seen_at,
        cast(n_user_ids as integer) as n_user_ids,
        cast(n_emails as integer) as n_emails,
        cast(n_cookies as integer) as n_cookies,
        cast(n_sessions as integer) as n_sessions,
        cast(n_fingerprints as integer) as n_fingerprints,
        cast(n_devices as integer) as n_devices,
        cast(last_user_agent as text) as last_user_agent
    from identity_profiles

)

select * from final
