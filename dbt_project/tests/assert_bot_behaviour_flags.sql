{#- Worked example of bot_behaviour_flags (the behavioural bot rules int_clicks applies), on inline rows so the
    expected answer is known: with bursts of >= 3 clicks within 10 s and previews within 5 s of link creation,
      ip A: clicks at 0, 4, 8 s  -> a burst (all three), the click at 30 s is alone;
      ip B: clicks at 0 and 20 s -> never 3 within 10 s;
      ip C: one click 2 s after its link was created -> preview_after_post;
      no IP: three clicks within 2 s -> never a burst (unknown IPs are not one visitor).
    Returns the rows where the macro disagrees with the expectation. -#}
-- depends_on: {{ ref('stg_raw__clicks') }}
{%- set t0 = "cast('2024-03-01 12:00:00+00:00' as timestamp with time zone)" %}

with clicks as (
    {%- set rows = [
        ('a1', 'A', 0, none, none), ('a2', 'A', 4, none, none), ('a3', 'A', 8, none, none),
        ('a4', 'A', 30, none, none),
        ('b1', 'B', 0, none, none), ('b2', 'B', 20, none, none),
        ('c1', 'C', 102, 100, 'preview_after_post'),
        ('n1', none, 0, none, none), ('n2', none, 1, none, none), ('n3', none, 2, none, none),
    ] %}
    {%- for click_id, ip, seconds, link_created_seconds, _ in rows %}
    select
        '{{ click_id }}' as click_id,
        {{ "'" ~ ip ~ "'" if ip else "cast(null as " ~ dbt.type_string() ~ ")" }} as ip_hash,
        {{ dbt.dateadd('second', seconds, t0) }} as clicked_at,
        {% if link_created_seconds is not none -%}
        {{ dbt.dateadd('second', link_created_seconds, t0) }}
        {%- else -%}
        cast(null as timestamp with time zone)
        {%- endif %} as link_created_at
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

expected as (
    {%- for click_id, ip, seconds, link_created_seconds, reason in rows %}
    select
        '{{ click_id }}' as click_id,
        {%- if click_id in ('a1', 'a2', 'a3') %}
        cast('burst' as {{ dbt.type_string() }})
        {%- elif reason %}
        cast('{{ reason }}' as {{ dbt.type_string() }})
        {%- else %}
        cast(null as {{ dbt.type_string() }})
        {%- endif %} as expected_reason
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

flagged as (
    {{ bot_behaviour_flags('clicks', burst_clicks=3, burst_window_seconds=10, preview_seconds=5) }}
)

select flagged.click_id, flagged.behaviour_bot_reason, expected.expected_reason
from flagged
inner join expected on expected.click_id = flagged.click_id
where coalesce(flagged.behaviour_bot_reason, '-') <> coalesce(expected.expected_reason, '-')
    or flagged.is_burst_bot <> (expected.expected_reason = 'burst')
union all
select click_id, 'missing from the macro output', null
from expected
where click_id not in (select click_id from flagged)
