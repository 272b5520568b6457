{#- The distinct members of every weak value over all non-bot clicks (macro popularity_members): what the
    candidates' popularity guards count, kept so that a run counts a value's members from here instead of from
    every click. Rebuilt by the daily job and full runs; the hourly job adds the pairs of its new loads in
    int_popularity_members_new. -#}
{{ config(
    materialized='table',
    **postgres_indexes([{'columns': ['first_loaded_at']}])
) }}

with

human_clicks as (

    select device_fingerprint, cookie_id, ip_hash, user_agent, _loaded_at
    from {{ ref('int_clicks') }}
    where not is_bot

)

{{ popularity_members('human_clicks') }}
