{{
    config(
        tags=['partitioned'],
        pre_hook=[
            "{{ int_delete_partition_window('converted_at') }}",
            "{{ single_threaded_session(not int_short_window()) }}",
        ],
        post_hook=["{{ single_threaded_session(false) }}"],
        **incremental_config('conversion_id', 'sync_all_columns', partition_by='conversion_date')
    )
}}

{#- Click -> conversion match candidates: every non-bot click inside a conversion's lookback window that shares at
    least one signal with it, one row per (conversion_id, click_id), with the signal flags the match model reads.

    Blocking, never a cross join: one equi-join per signal (direct click id, user_id, session, cookie, fingerprint,
    email, IP + user agent, IP, resolved identity), each restricted to the lookback window, then the union of the
    pair keys. The flags are recomputed on the final pairs from both sides' values, so a flag is true whenever the
    pair shares the signal, whichever join found the pair.

    Scale guard: carrier-grade NAT IPs and popular phone fingerprints are shared by hundreds of strangers, and a
    join on them alone would pair every conversion with thousands of clicks. So the IP join skips IPs seen with
    more than candidate_max_ip_popularity distinct fingerprints; on those IPs only (elsewhere the IP join already
    pairs every click of the IP), the IP + user agent join skips (IP, user agent) values seen with more than
    candidate_max_ip_ua_popularity distinct cookies; the fingerprint join skips fingerprints seen with more than
    candidate_max_fingerprint_popularity distinct cookies. A pair that shares only such a value is not generated;
    a pair found through another signal still gets sig_ip / sig_ip_ua / sig_fingerprint. IP joins also skip
    conversions from datacenter IPs (VPN and proxy exits are shared by strangers).

    The guards bound the work; they never decide alone that a pair is impossible. On every value a guard skips,
    the candidate_recent_clicks_per_value most recent clicks inside the lookback that share the conversion's
    fingerprint, IP or (IP, user agent) are candidates too (on the other values the full join pairs them all): the last click carrying a popular phone fingerprint
    minutes before the conversion is often the converter's, and the model weighs it with the recency rank, the
    gap and the popularity. The k most recent are found by equi-joins, never a range join: clicks and
    conversions of one value are numbered in time order (the conversion gets the number of clicks up to it),
    and each conversion is joined to the clicks numbered n, n - 1, ..., n - k + 1 of its value.

    Partitions: with vars partition_start / partition_end (Dagster passes the partition's bounds) only
    conversions with converted_at in [start, end) are processed, against clicks from start - lookback_days to
    end; the pre-hook deletes that window first. Without them everything is rebuilt. Popularity counts the members
    of a value over all non-bot clicks (int_popularity_members and what the loads since its build added,
    int_popularity_members_new; before the table's first build, the latter holds them all), so a partition's rows
    do not depend on which window is processed. -#}

{%- set p_start = int_partition_bound('partition_start') %}
{%- set p_end = int_partition_bound('partition_end') %}
{%- set lookback_seconds = int_setting('lookback_days') * 86400 %}
{%- set skew_seconds = int_setting('candidate_clock_skew_seconds') %}
{%- set max_ip_popularity = int_setting('candidate_max_ip_popularity') %}
{%- set max_ip_ua_popularity = int_setting('candidate_max_ip_ua_popularity') %}
{%- set max_fingerprint_popularity = int_setting('candidate_max_fingerprint_popularity') %}
{%- set recent_per_value = int_setting('candidate_recent_clicks_per_value') %}
{%- set name_condition = {
    'fingerprint': 'conversions.device_fingerprint = clicks.device_fingerprint',
    'ip': 'conversions.ip_hash = clicks.ip_hash',
    'ip_ua': 'conversions.ip_hash = clicks.ip_hash and conversions.user_agent = clicks.user_agent',
} %}
{#- The weak values of the k-most-recent joins: (name, columns, whether datacenter-IP conversions are skipped). -#}
{%- set recent_values = [
    ('fingerprint', ['device_fingerprint'], false),
    ('ip', ['ip_hash'], true),
    ('ip_ua', ['ip_hash', 'user_agent'], true),
] %}

{#- Event identities are built after the Python identity graph (a dbt stage of their own, tag after_identity_graph); before
    their first build there are no identities, which is the same as an empty table. -#}
{%- set event_identities_relation = ref('int_event_identities') %}
{%- set has_identities = int_relation_exists(event_identities_relation) %}

{#- The window's clicks are read through a CTE of the columns the model needs. On DuckDB (columnar) and on PostgreSQL
    over long windows it is NOT MATERIALIZED: each join scans only its columns with its filters pushed down, instead
    of the engine buffering a copy of the clicks. On PostgreSQL over a window of a week or less (the hourly and daily
    jobs) it is materialised: a row store reads whole rows, and the dozen joins over int_clicks read it again each
    time (18 reads, 100 GB at 10M clicks, 168 s for the hourly job's two days; 104 s with a copy). -#}
{%- set clicks_cte = postgres_short_window_materialized() %}
with

conversions_in_window as (

    select * from {{ ref('stg_raw__conversions') }}
    where converted_at is not null
    {%- if p_start %}
        and converted_at >= {{ int_timestamptz_literal(p_start) }}
    {%- endif %}
    {%- if p_end %}
        and converted_at < {{ int_timestamptz_literal(p_end) }}
    {%- endif %}

),

all_clicks as not materialized (

    select * from {{ ref('int_clicks') }}

),

-- The non-bot clicks a conversion of the window can match; the lookback condition of every join implies the time
-- filter, which only lets the engine skip old clicks early.
window_clicks as {{ clicks_cte }} (

    select
        click_id,
        clicked_at,
        link_id,
        campaign_id,
        creator_id,
        channel,
        user_id,
        email_hash,
        cookie_id,
        session_id,
        device_fingerprint,
        ip_hash,
        user_agent,
        device_family,
        os_family,
        in_app_browser
    from all_clicks
    where not is_bot
    {%- if p_start %}
        and clicked_at >= {{ int_seconds_before(int_timestamptz_literal(p_start), lookback_seconds) }}
    {%- endif %}
    {%- if p_end %}
        and clicked_at <= {{ int_seconds_after(int_timestamptz_literal(p_end), skew_seconds) }}
    {%- endif %}

),

event_identities as not materialized (

    {%- if has_identities %}
    select
        event_kind,
        event_id,
        cast(identity_id as {{ dbt.type_string() }}) as identity_id
    from {{ event_identities_relation }}
    where identity_id is not null
    {%- else %}
    select
        cast(null as {{ dbt.type_string() }}) as event_kind,
        cast(null as {{ dbt.type_string() }}) as event_id,
        cast(null as {{ dbt.type_string() }}) as identity_id
    where 1 = 0
    {%- endif %}

),

click_identities as not materialized (

    select event_id as click_id, identity_id
    from event_identities
    where event_kind = 'click'

),

{#- Popularity counts the distinct members of a value over all non-bot clicks (never only the window's, so a
    partition's rows do not depend on the window): the stored members and those the loads since added, which are
    disjoint. Fingerprints are few and the popular ones cover most clicks, so theirs are counted once for all. IPs
    are many and small, so theirs are counted only for the values a run needs: those of the window's conversions
    (the guards of the IP joins), then those of the candidate clicks (the output column). A value no member
    counts has popularity 0 for the guards and 1 in the output. -#}

popularity_members as not materialized (

    {%- if int_relation_exists(ref('int_popularity_members')) %}
    select value_kind, value, member from {{ ref('int_popularity_members') }}
    union all
    {%- endif %}
    select value_kind, value, member from {{ ref('int_popularity_members_new') }}

),

fingerprint_popularity as (

    select value as device_fingerprint, n_cookies
    from ({{ popularity_counts('popularity_members', 'fingerprint', 'n_cookies') }}) as counts

),

conversions as (

    select
        conversions_in_window.conversion_id,
        conversions_in_window.converted_at,
        conversions_in_window.converted_date,
        conversions_in_window.event_type,
        conversions_in_window.revenue,
        conversions_in_window.user_id,
        conversions_in_window.email_hash,
        conversions_in_window.cookie_id,
        conversions_in_window.session_id,
        conversions_in_window.device_fingerprint,
        conversions_in_window.ip_hash,
        coalesce(conversions_in_window.is_datacenter_ip, false) as is_datacenter_ip,
        conversions_in_window.user_agent,
        conversions_in_window.device_family,
        conversions_in_window.os_family,
        conversions_in_window.in_app_browser,
        conversions_in_window.direct_click_id,
        direct_clicks.click_id is not null as has_direct_click,
        conversion_identities.identity_id
    from conversions_in_window
    left join all_clicks as direct_clicks
        on conversions_in_window.direct_click_id = direct_clicks.click_id
    left join event_identities as conversion_identities
        on conversion_identities.event_kind = 'conversion'
        and conversions_in_window.conversion_id = conversion_identities.event_id

),

conversion_ips as (

    select distinct ip_hash from conversions
    where ip_hash is not null
        and not is_datacenter_ip

),

ip_guard as (

    select value as ip_hash, n_fingerprints
    from ({{ popularity_counts('popularity_members', 'ip', 'n_fingerprints', 'select ip_hash from conversion_ips') }})
        as counts

),

-- IP + user agent matters only on IPs too popular for the IP join (on the others the IP join already pairs every
-- click of the IP), so it is only counted there, for the values the window's conversions carry (the only ones its
-- joins and recent clicks look up).
conversion_ip_uas as (

    select distinct
        conversions.ip_hash,
        conversions.user_agent,
        {{ popularity_ip_ua_value('conversions.ip_hash', 'conversions.user_agent') }} as ip_ua_value
    from conversions
    inner join ip_guard
        on conversions.ip_hash = ip_guard.ip_hash
        and ip_guard.n_fingerprints > {{ max_ip_popularity }}
    where conversions.user_agent is not null

),

ip_ua_guard as (

    select
        conversion_ip_uas.ip_hash,
        conversion_ip_uas.user_agent,
        count(*) as n_cookies
    from conversion_ip_uas
    inner join popularity_members
        on popularity_members.value_kind = 'ip_ua'
        and popularity_members.value = conversion_ip_uas.ip_ua_value
    group by conversion_ip_uas.ip_hash, conversion_ip_uas.user_agent

),

-- The conversions each guarded join may pair, the popularity guard applied first. Materialised, so that the engine
-- cannot join the clicks first and filter afterwards: PostgreSQL did, pairing conversions with every click of
-- popular fingerprints (18M intermediate rows at 1M clicks) before the guard dropped them.
fingerprint_conversions as materialized (

    select conversions.conversion_id, conversions.converted_at, conversions.device_fingerprint
    from conversions
    left join fingerprint_popularity
        on conversions.device_fingerprint = fingerprint_popularity.device_fingerprint
    where conversions.device_fingerprint is not null
        and coalesce(fingerprint_popularity.n_cookies, 0) <= {{ max_fingerprint_popularity }}

),

ip_conversions as materialized (

    select conversions.conversion_id, conversions.converted_at, conversions.ip_hash
    from conversions
    left join ip_guard
        on conversions.ip_hash = ip_guard.ip_hash
    where conversions.ip_hash is not null
        and not conversions.is_datacenter_ip
        and coalesce(ip_guard.n_fingerprints, 0) <= {{ max_ip_popularity }}

),

ip_ua_conversions as materialized (

    select conversions.conversion_id, conversions.converted_at, conversions.ip_hash, conversions.user_agent
    from conversions
    inner join conversion_ip_uas
        on conversions.ip_hash = conversion_ip_uas.ip_hash
        and conversions.user_agent = conversion_ip_uas.user_agent
    left join ip_ua_guard
        on conversions.ip_hash = ip_ua_guard.ip_hash
        and conversions.user_agent = ip_ua_guard.user_agent
    where not conversions.is_datacenter_ip
        and coalesce(ip_ua_guard.n_cookies, 0) <= {{ max_ip_ua_popularity }}

),

-- Offsets 0 .. k - 1 of the k-most-recent joins (none when k is 0).
recent_offsets as (

    {%- for n in range(recent_per_value) %}
    select {{ n }} as n
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- else %}
    select 0 as n where 1 = 0
    {%- endfor %}

),

{%- for name, columns, skip_datacenter in recent_values %}

-- {{ name }}: only the values a guard skips (elsewhere the full join already pairs every click of the value), and of
-- those only the ones the window's conversions carry; clicks and conversions of each such value numbered in time
-- order, a conversion's number being the count of clicks of its value up to it (clicks first on ties), so its k
-- most recent clicks are numbered n - k + 1 .. n.
recent_{{ name }}_values as materialized (

    {%- if name == 'fingerprint' %}
    select distinct fingerprint_popularity.device_fingerprint
    from fingerprint_popularity
    inner join conversions
        on fingerprint_popularity.device_fingerprint = conversions.device_fingerprint
    where fingerprint_popularity.n_cookies > {{ max_fingerprint_popularity }}
    {%- elif name == 'ip' %}
    select ip_hash from ip_guard
    where n_fingerprints > {{ max_ip_popularity }}
    {%- else %}
    select ip_hash, user_agent from ip_ua_guard
    where n_cookies > {{ max_ip_ua_popularity }}
    {%- endif %}

),

recent_{{ name }}_events as (

    select
        {% for c in columns %}clicks.{{ c }}, {% endfor %}
        clicks.clicked_at as event_at,
        0 as is_conversion,
        clicks.click_id as event_id,
        clicks.clicked_at as converted_at
    from window_clicks as clicks
    inner join recent_{{ name }}_values as v
        on {% for c in columns %}clicks.{{ c }} = v.{{ c }}{% if not loop.last %} and {% endif %}{% endfor %}

    union all

    select
        {% for c in columns %}conversions.{{ c }}, {% endfor %}
        {{ int_seconds_after('conversions.converted_at', skew_seconds) }} as event_at,
        1 as is_conversion,
        conversions.conversion_id as event_id,
        conversions.converted_at
    from conversions
    inner join recent_{{ name }}_values as v
        on {% for c in columns %}conversions.{{ c }} = v.{{ c }}{% if not loop.last %} and {% endif %}{% endfor %}
    {%- if skip_datacenter %}
    where not conversions.is_datacenter_ip
    {%- endif %}

),

recent_{{ name }}_numbered as materialized (

    select
        *,
        sum(1 - is_conversion) over (
            partition by {{ columns | join(', ') }}
            order by event_at, is_conversion, event_id
            rows between unbounded preceding and current row
        ) as click_number
    from recent_{{ name }}_events

),

-- Each conversion's wanted click numbers as a column of their own (materialised), so that the engine joins the
-- clicks on the value and the number together: PostgreSQL, misjudging these CTEs' sizes, joined on the value alone
-- and filtered the numbers afterwards, pairing every conversion with every click of a popular fingerprint (40 GB of
-- temporary files at 10M clicks).
recent_{{ name }}_wanted as materialized (

    select
        {% for c in columns %}conv.{{ c }}, {% endfor %}
        conv.event_id as conversion_id,
        conv.converted_at,
        conv.click_number - recent_offsets.n as wanted_number
    from recent_{{ name }}_numbered as conv
    cross join recent_offsets
    where conv.is_conversion = 1

),

recent_{{ name }}_pairs as (

    select wanted.conversion_id, clicks.event_id as click_id
    from recent_{{ name }}_wanted as wanted
    inner join recent_{{ name }}_numbered as clicks
        on {% for c in columns %}wanted.{{ c }} = clicks.{{ c }} and {% endfor %}clicks.click_number = wanted.wanted_number
        and clicks.is_conversion = 0
        and {{ int_within_lookback('clicks.event_at', 'wanted.converted_at') }}

),
{%- endfor %}

-- Blocking: one equi-join per signal, each inside the lookback window.
pairs_by_signal as (

    {%- for signal, column in [
        ('direct_click', 'direct_click_id'),
        ('user_id', 'user_id'),
        ('session', 'session_id'),
        ('cookie', 'cookie_id'),
        ('email', 'email_hash'),
    ] %}

    -- {{ signal }}
    select conversions.conversion_id, clicks.click_id
    from conversions
    inner join window_clicks as clicks
        on conversions.{{ column }} = clicks.{{ 'click_id' if signal == 'direct_click' else column }}
        and {{ int_within_lookback('clicks.clicked_at', 'conversions.converted_at') }}

    union
    {%- endfor %}

    -- fingerprint, unless more than candidate_max_fingerprint_popularity cookies share it
    select conversions.conversion_id, clicks.click_id
    from fingerprint_conversions as conversions
    inner join window_clicks as clicks
        on conversions.device_fingerprint = clicks.device_fingerprint
        and {{ int_within_lookback('clicks.clicked_at', 'conversions.converted_at') }}

    union

    -- IP, unless more than candidate_max_ip_popularity fingerprints share it
    select conversions.conversion_id, clicks.click_id
    from ip_conversions as conversions
    inner join window_clicks as clicks
        on conversions.ip_hash = clicks.ip_hash
        and {{ int_within_lookback('clicks.clicked_at', 'conversions.converted_at') }}

    union

    -- IP + user agent on a popular IP, unless more than candidate_max_ip_ua_popularity cookies share both
    select conversions.conversion_id, clicks.click_id
    from ip_ua_conversions as conversions
    inner join window_clicks as clicks
        on conversions.ip_hash = clicks.ip_hash
        and conversions.user_agent = clicks.user_agent
        and {{ int_within_lookback('clicks.clicked_at', 'conversions.converted_at') }}

    {%- for name, columns, skip_datacenter in recent_values %}

    union

    -- the k most recent clicks sharing the {{ name }}, however popular
    select conversion_id, click_id from recent_{{ name }}_pairs
    {%- endfor %}

    union

    -- resolved identity
    select conversions.conversion_id, clicks.click_id
    from conversions
    inner join click_identities
        on conversions.identity_id = click_identities.identity_id
    inner join window_clicks as clicks
        on click_identities.click_id = clicks.click_id
        and {{ int_within_lookback('clicks.clicked_at', 'conversions.converted_at') }}

),

-- The candidate clicks with the attributes the output needs (every one is inside the window). A join, not
-- `click_id in (select ... from pairs_by_signal)`: Spark infers that predicate for the pairs the final select joins
-- to these clicks and pushes it into every branch of the union, copying the whole union into each (56 s instead
-- of 19 s on a 250-person world).
candidate_clicks as (

    select
        clicks.click_id,
        clicks.clicked_at,
        clicks.link_id,
        clicks.campaign_id,
        clicks.creator_id,
        clicks.channel,
        clicks.user_id,
        clicks.email_hash,
        clicks.cookie_id,
        clicks.session_id,
        clicks.device_fingerprint,
        clicks.ip_hash,
        clicks.user_agent,
        clicks.device_family,
        clicks.os_family,
        clicks.in_app_browser,
        click_identities.identity_id
    from window_clicks as clicks
    inner join (select distinct click_id from pairs_by_signal) as pair_clicks
        on clicks.click_id = pair_clicks.click_id
    left join click_identities
        on clicks.click_id = click_identities.click_id

),

ip_popularity as (

    select value as ip_hash, n_fingerprints
    from ({{ popularity_counts('popularity_members', 'ip', 'n_fingerprints', 'select ip_hash from candidate_clicks') }})
        as counts

),

-- Each pair's rank among the conversion's candidates sharing the value, newest first, on narrow rows of their own:
-- a window holds every column of the rows it reads (over the wide output rows, 1.6M pairs at 10M clicks, the
-- model took 48 s on DuckDB instead of 38 s).
pair_values as (

    select
        pairs.conversion_id,
        pairs.click_id,
        clicks.clicked_at,
        {%- for name, columns, skip_datacenter in recent_values %}
        {{ int_true(name_condition[name]) }} as shares_{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from pairs_by_signal as pairs
    inner join conversions
        on pairs.conversion_id = conversions.conversion_id
    inner join candidate_clicks as clicks
        on pairs.click_id = clicks.click_id

),

pair_ranks as (

    select
        conversion_id,
        click_id,
        {%- for name, columns, skip_datacenter in recent_values %}
        case when shares_{{ name }} then row_number() over (
            partition by conversion_id, shares_{{ name }}
            order by clicked_at desc, click_id
        ) end as {{ name }}_recency_rank{{ ',' if not loop.last }}
        {%- endfor %}
    from pair_values

),

final as (

    select
        pairs.conversion_id,
        pairs.click_id,
        conversions.converted_date as conversion_date,
        conversions.converted_at,
        clicks.clicked_at,
        clicks.link_id,
        clicks.campaign_id,
        clicks.creator_id,
        clicks.channel,
        conversions.revenue,
        conversions.event_type,
        {{ int_seconds_between('clicks.clicked_at', 'conversions.converted_at') }} as gap_seconds,
        {{ int_true('conversions.direct_click_id = clicks.click_id') }} as sig_direct_click,
        {{ int_true('conversions.user_id = clicks.user_id') }} as sig_user_id,
        {{ int_true('conversions.session_id = clicks.session_id') }} as sig_session,
        {{ int_true('conversions.cookie_id = clicks.cookie_id') }} as sig_cookie,
        {{ int_true('conversions.device_fingerprint = clicks.device_fingerprint') }} as sig_fingerprint,
        {{ int_true('conversions.email_hash = clicks.email_hash') }} as sig_email,
        {{ int_true('conversions.ip_hash = clicks.ip_hash and conversions.user_agent = clicks.user_agent') }}
            as sig_ip_ua,
        {{ int_true('conversions.ip_hash = clicks.ip_hash') }} as sig_ip,
        {{ int_true('conversions.identity_id = clicks.identity_id') }} as sig_identity,
        greatest(coalesce(fingerprint_popularity.n_cookies, 1), 1) as fingerprint_popularity,
        greatest(coalesce(ip_popularity.n_fingerprints, 1), 1) as ip_popularity,
        {{ int_true('conversions.device_family = clicks.device_family and conversions.os_family = clicks.os_family') }}
            as ua_family_match,
        {{ int_true(
            'clicks.in_app_browser is not null and conversions.in_app_browser is null'
            ~ ' and conversions.os_family = clicks.os_family'
        ) }} as inapp_to_main_switch,
        {%- for name, columns, skip_datacenter in recent_values %}
        pair_ranks.{{ name }}_recency_rank,
        {%- endfor %}
        clicks.identity_id as click_identity_id,
        conversions.identity_id as conversion_identity_id,
        conversions.has_direct_click as conversion_has_direct_click,
        clicks.device_family as click_device_family,
        conversions.device_family as conversion_device_family,
        clicks.in_app_browser as click_in_app_browser
    from pairs_by_signal as pairs
    inner join conversions
        on pairs.conversion_id = conversions.conversion_id
    inner join candidate_clicks as clicks
        on pairs.click_id = clicks.click_id
    left join fingerprint_popularity
        on clicks.device_fingerprint = fingerprint_popularity.device_fingerprint
    left join ip_popularity
        on clicks.ip_hash = ip_popularity.ip_hash
    inner join pair_ranks
        on pairs.conversion_id = pair_ranks.conversion_id
        and pairs.click_id = pair_ranks.click_id

)

select * from final
