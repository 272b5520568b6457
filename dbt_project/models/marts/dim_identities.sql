{#- One row per resolved person (identity): when they were first and last seen and how many identifiers and
    devices the identity graph tied together.

    The identifier counts come from int_identity_map: exactly the identifiers resolved into the identity. Activity
    comes from the identity's events (non-bot clicks and conversions, int_event_identities): an event without a
    strong identifier is an identity of its own (evt_ id), and an identity whose events all went to another part
    of a split component has no activity (null timestamps, zero fingerprints). -#}

with

identity_map as (

    select * from {{ ref('int_identity_map') }}

),

event_identities as (

    select * from {{ ref('int_event_identities') }}

),

clicks as (

    select * from {{ ref('int_clicks') }}
    where not is_bot

),

conversions as (

    select * from {{ ref('stg_raw__conversions') }}

),

events as materialized (

    select
        event_identities.identity_id,
        clicks.clicked_at as observed_at,
        clicks.device_fingerprint,
        clicks.device_family,
        clicks.user_agent
    from event_identities
    inner join clicks
        on event_identities.event_kind = 'click'
        and event_identities.event_id = clicks.click_id

    union all

    select
        event_identities.identity_id,
        conversions.converted_at as observed_at,
        conversions.device_fingerprint,
        cast(null as {{ dbt.type_string() }}) as device_family,
        cast(null as {{ dbt.type_string() }}) as user_agent
    from event_identities
    inner join conversions
        on event_identities.event_kind = 'conversion'
        and event_identities.event_id = conversions.conversion_id

),

-- Distinct counts as plain aggregates over deduplicated pairs: millions of per-group distinct sets would not
-- spill to disk, these hash aggregates do.
fingerprints as (

    select identity_id, count(*) as n_fingerprints
    from (select distinct identity_id, device_fingerprint from events where device_fingerprint is not null) as pairs
    group by identity_id

),

device_families as (

    select identity_id, count(*) as n_device_families
    from (select distinct identity_id, device_family from events where device_family is not null) as pairs
    group by identity_id

),

activity as (

    select
        identity_id,
        min(observed_at) as first_seen_at,
        max(observed_at) as last_seen_at
    from events
    group by identity_id

),

latest_agent_time as (

    select identity_id, max(observed_at) as observed_at
    from events
    where user_agent is not null
    group by identity_id

),

-- The user agent of the latest click that has one; a tie at that instant goes to the greatest value, so a
-- rebuild gives the same answer whatever order the engine scans in.
latest_agents as (

    select events.identity_id, max(events.user_agent) as last_user_agent
    from events
    inner join latest_agent_time
        on events.identity_id = latest_agent_time.identity_id
        and events.observed_at = latest_agent_time.observed_at
    where events.user_agent is not null
    group by events.identity_id

),

identifiers as (

    select
        identity_id,
        {%- for identifier_type in ['user_id', 'email', 'cookie', 'session'] %}
        sum(case when identifier_type = '{{ identifier_type }}' then 1 else 0 end) as n_{{ identifier_type }}s
        {{- "," if not loop.last }}
        {%- endfor %}
    from identity_map
    group by identity_id

),

identities as (

    select identity_id from identifiers
    union
    select identity_id from activity

),

final as (

    select
        cast(identities.identity_id as text) as identity_id,
        cast(activity.first_seen_at as timestamp with time zone) as first_seen_at,
        cast(activity.last_seen_at as timestamp with time zone) as last_seen_at,
        cast(coalesce(identifiers.n_user_ids, 0) as integer) as n_user_ids,
        cast(coalesce(identifiers.n_emails, 0) as integer) as n_emails,
        cast(coalesce(identifiers.n_cookies, 0) as integer) as n_cookies,
        cast(coalesce(identifiers.n_sessions, 0) as integer) as n_sessions,
        cast(coalesce(fingerprints.n_fingerprints, 0) as integer) as n_fingerprints,
        -- An in-app webview and the phone's browser are one device: count device families, or fingerprints
        -- when no click told the family.
        cast(
            case
                when coalesce(device_families.n_device_families, 0) > 0 then device_families.n_device_families
                else coalesce(fingerprints.n_fingerprints, 0)
            end as integer
        ) as n_devices,
        cast(latest_agents.last_user_agent as text) as last_user_agent
    from identities
    left join identifiers
        on identities.identity_id = identifiers.identity_id
    left join activity
        on identities.identity_id = activity.identity_id
    left join fingerprints
        on identities.identity_id = fingerprints.identity_id
    left join device_families
        on identities.identity_id = device_families.identity_id
    left join latest_agents
        on identities.identity_id = latest_agents.identity_id

)

select * from final
