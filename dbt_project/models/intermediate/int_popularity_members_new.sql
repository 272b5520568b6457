{#- The (value, member) pairs of the clicks loaded since int_popularity_members was built that it does not hold:
    with it, every distinct member of every weak value. Empty right after that table's build (the daily job and
    full runs); the hourly job, which does not rebuild it, adds here what its loads brought. Its mark is the
    newest first load in the table, never later than the newest click it read, so no click is missed; clicks
    read again find their pairs already held. Before the table's first build (an hourly run on a new warehouse)
    every pair is new. -#}
{%- set members = ref('int_popularity_members') %}
{%- set has_members = int_relation_exists(members) %}

with

new_clicks as (

    select device_fingerprint, cookie_id, ip_hash, user_agent, _loaded_at
    from {{ ref('int_clicks') }}
    where not is_bot
    {%- if has_members %}
        and _loaded_at > {{ stored_watermark(members, 'first_loaded_at') }}
    {%- endif %}

),

new_pairs as (

    {{ popularity_members('new_clicks') }}

)

select *
from new_pairs
{%- if has_members %}
where not exists (
    select 1
    from {{ members }} as members
    where members.value_kind = new_pairs.value_kind
        and members.value = new_pairs.value
        and members.member = new_pairs.member
)
{%- endif %}
