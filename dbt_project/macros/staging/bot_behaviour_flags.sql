{#- bot_behaviour_flags(relation, ...): the behavioural bot rules, which need other rows and therefore cannot run in
    staging (one row at a time, no joins). Meant for intermediate.int_clicks, after it has joined each click to its
    link:

        with clicks_with_links as (
            select c.*, l.created_at as link_created_at
            from {{ ref('stg_raw__clicks') }} as c
            left join {{ ref('stg_raw__links') }} as l on l.link_id = c.link_id
        ),
        flagged as (
            {{ bot_behaviour_flags('clicks_with_links') }}
        )
        select ..., is_bot or is_burst_bot or is_preview_bot as is_bot,
               coalesce(bot_reason, behaviour_bot_reason) as bot_reason
        from flagged

    Returns every column of `relation` plus (names as in int_clicks)
      is_burst_bot         - the click is part of a burst: some window of var bot_burst_window_seconds holds at
                             least var bot_burst_clicks clicks from the same ip_hash (people do not click that
                             fast; a click without ip_hash is never a burst);
      is_preview_bot       - the click came within var bot_preview_seconds (either side) of its link's
                             created_at: platforms fetch a link for its preview card the moment it is posted;
      behaviour_bot_reason - 'burst', 'preview_after_post' or null (in that order of precedence);
    and the helper columns _bbf_epoch, _bbf_ends_burst, _bbf_in_burst (select explicit columns downstream).

    Portable: window frames use RANGE offsets over epoch seconds (numbers), which DuckDB and PostgreSQL both
    support, rather than interval offsets. The burst rule is two window passes: a click "ends a burst" when the
    trailing window [t - W, t] of its IP holds >= N clicks; a click is "in a burst" when a burst ends within
    [t, t + W] of it, i.e. it lies in some dense window. Cost: one sort per pass on (ip_hash, clicked_at).
-#}
{% macro bot_behaviour_flags(relation, ip_column='ip_hash', clicked_at_column='clicked_at',
                             link_created_at_column='link_created_at', burst_clicks=none,
                             burst_window_seconds=none, preview_seconds=none) %}
{%- set n = (burst_clicks if burst_clicks is not none else var('bot_burst_clicks')) | int -%}
{%- set w = (burst_window_seconds if burst_window_seconds is not none else var('bot_burst_window_seconds')) | float -%}
{%- set p = (preview_seconds if preview_seconds is not none else var('bot_preview_seconds')) | float -%}
select
    _bbf_flagged.*,
    case
        when _bbf_in_burst = 1 then 'burst'
        when is_preview_bot then 'preview_after_post'
    end as behaviour_bot_reason
from (
    select
        _bbf_trailing.*,
        coalesce(_bbf_in_burst, 0) = 1 as is_burst_bot,
        coalesce(
            abs(_bbf_epoch - {{ link_attribution.epoch_seconds(link_created_at_column) }}) <= {{ p }},
            false
        ) as is_preview_bot
    from (
        select
            _bbf_counted.*,
            case when {{ ip_column }} is not null then
                max(_bbf_ends_burst) over (
                    partition by {{ ip_column }}
                    order by _bbf_epoch
                    range between current row and {{ w }} following
                )
            end as _bbf_in_burst
        from (
            select
                _bbf_base.*,
                case
                    when {{ ip_column }} is not null
                        and count(*) over (
                            partition by {{ ip_column }}
                            order by _bbf_epoch
                            range between {{ w }} preceding and current row
                        ) >= {{ n }}
                    then 1 else 0
                end as _bbf_ends_burst
            from (
                select
                    _bbf_source.*,
                    {{ link_attribution.epoch_seconds(clicked_at_column) }} as _bbf_epoch
                from {{ relation }} as _bbf_source
            ) as _bbf_base
        ) as _bbf_counted
    ) as _bbf_trailing
) as _bbf_flagged
{% endmacro %}
