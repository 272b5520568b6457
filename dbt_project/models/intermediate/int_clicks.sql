{#- One row per staged click, with its link's attributes and the final bot decision: the row-level rules of
    staging (user agent, datacenter IP, ...) plus two behavioural rules that need other rows, which staging (one row
    at a time) cannot apply:
      burst               bot_burst_clicks or more clicks from one IP within bot_burst_window_seconds;
      preview_after_post  a click within bot_preview_seconds of the link's creation (link unfurlers, previews).
    A row-level reason from staging wins over the behavioural ones.

    Incremental (delete+insert on click_id; a table on Spark, which rebuilds it): a run recomputes the clicks staged
    since the previous build, the clicks of links staged since then (their attributes and the preview rule), and
    the clicks of the same IPs whose burst flags those can change (within bot_burst_window_seconds of them); every
    other row is already what a full build gives. -#}
{{ config(**incremental_config('click_id', 'append_new_columns', indexes=[
    {'columns': ['click_id']},
    {'columns': ['_loaded_at']},
    {'columns': ['_link_loaded_at']},
])) }}
{%- set burst_clicks = var('bot_burst_clicks') | int %}
{%- set burst_window_seconds = var('bot_burst_window_seconds') | float %}
{%- set preview_seconds = var('bot_preview_seconds') | float %}
{#- A table built before int_clicks kept its load times has no watermark: that run rebuilds every row (and adds
    the columns), as a full refresh would. (A unit test's `this` is its given rows, named by a string.) #}
{%- set incremental = is_incremental() and (this is string
    or '_link_loaded_at' in (adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list)) %}

with

clicks as not materialized (

    select * from {{ ref('stg_raw__clicks') }}

),

{#- Inlined where it is read, so PostgreSQL estimates the links staged since the watermark from the table's own
    statistics (few), not as a third of a materialised CTE. #}
links as not materialized (

    select * from {{ ref('stg_raw__links') }}

),
{%- if incremental %}

-- What changed since the previous build: clicks staged since, and the clicks of links staged since (two selects,
-- so each can read its rows through an index on PostgreSQL).
seeds as (

    select
        clicks.click_id,
        clicks.ip_hash,
        {{ epoch_seconds('clicks.clicked_at') }} as clicked_epoch
    from clicks
    where clicks._loaded_at > {{ stored_watermark(this, '_loaded_at') }}
    union
    select
        clicks.click_id,
        clicks.ip_hash,
        {{ epoch_seconds('clicks.clicked_at') }} as clicked_epoch
    from clicks
    inner join links
        on clicks.link_id = links.link_id
    where links._loaded_at > {{ stored_watermark(this, '_link_loaded_at') }}

),

seed_ip_spans as (

    select
        ip_hash,
        min(clicked_epoch) as first_epoch,
        max(clicked_epoch) as last_epoch
    from seeds
    where ip_hash is not null
    group by ip_hash

),

-- A click's burst flag reads its IP's clicks within one window on either side, so a seed can change the flags of
-- its IP's clicks within one window of it (rebuilt), and those read the clicks within two windows (context).
seed_ip_clicks as (

    select
        clicks.click_id,
        {{ epoch_seconds('clicks.clicked_at') }} as clicked_epoch,
        seed_ip_spans.first_epoch,
        seed_ip_spans.last_epoch
    from clicks
    inner join seed_ip_spans
        on clicks.ip_hash = seed_ip_spans.ip_hash

),

burst_context as (

    select
        click_id,
        clicked_epoch between first_epoch - {{ burst_window_seconds }}
            and last_epoch + {{ burst_window_seconds }} as is_rebuilt
    from seed_ip_clicks
    where clicked_epoch between first_epoch - 2 * {{ burst_window_seconds }}
        and last_epoch + 2 * {{ burst_window_seconds }}

),

rebuilt as (

    select click_id from burst_context where is_rebuilt
    union
    select click_id from seeds

),
{%- endif %}

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
        case when coalesce(clicks.is_bot, false) then clicks.bot_reason end as row_bot_reason,
        clicks._loaded_at,
        links._loaded_at as _link_loaded_at
    from clicks
    left join links
        on clicks.link_id = links.link_id
    {%- if incremental %}
    where clicks.click_id in (select click_id from rebuilt)
    {%- endif %}

),

-- The behavioural rules on the four columns they need, so the window passes sort narrow rows instead of the wide
-- click rows: every staged click counts, bots included (they share the IP). Window frames use RANGE offsets over
-- epoch seconds (numbers), which every engine supports, rather than interval offsets.
click_times as (

    select
        clicks.click_id,
        clicks.ip_hash,
        {{ epoch_seconds('clicks.clicked_at') }} as clicked_epoch,
        {{ epoch_seconds('links.created_at') }} as link_created_epoch
    from clicks
    left join links
        on clicks.link_id = links.link_id
    {%- if incremental %}
    where clicks.click_id in (select click_id from burst_context union all select click_id from seeds)
    {%- endif %}

),

-- A click ends a burst when the trailing window [t - W, t] of its IP holds at least N clicks (people do not click
-- that fast). A click without ip_hash is never part of a burst: unknown IPs are not one visitor.
burst_ends as (

    select
        click_times.*,
        case
            when ip_hash is not null
                and count(*) over (
                    partition by ip_hash
                    order by clicked_epoch
                    range between {{ burst_window_seconds }} preceding and current row
                ) >= {{ burst_clicks }}
            then 1 else 0
        end as ends_burst
    from click_times

),

-- A click is in a burst when a burst ends within [t, t + W] of it, i.e. it lies in some dense window.
burst_members as (

    select
        burst_ends.*,
        case when ip_hash is not null then
            max(ends_burst) over (
                partition by ip_hash
                order by clicked_epoch
                range between current row and {{ burst_window_seconds }} following
            )
        end as in_burst
    from burst_ends

),

-- Platforms fetch a link for its preview card the moment it is posted: a click within the preview window of its
-- link's creation (either side) is that fetch.
behaviour_flags as (

    select
        click_id,
        coalesce(in_burst, 0) = 1 as is_burst_bot,
        coalesce(abs(clicked_epoch - link_created_epoch) <= {{ preview_seconds }}, false) as is_preview_bot
    from burst_members

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
        end as bot_reason,
        _loaded_at,
        _link_loaded_at
    from flagged

)

select * from final
