{#- What decides between the versions of one raw key (at-least-once delivery: a key may arrive many times). Each
    staged model keeps its key's best version when that version is valid; rejected_rows keeps it when it is not
    (plus every row without a key). Both call these macros, so each distinct raw key lands in exactly one of the two.

    The reject reasons read the columns the models' cleaned and typed CTEs name (listed in _staging__macros.yml). -#}

{#- version_rank(key, raw_columns): 1 for the best version of `key`.
      1. a valid version beats an invalid one        (a corrupt re-delivery never erases a good row),
      2. then the later _loaded_at wins              (corrections arrive in later loads),
      3. then _source_file and the raw values         (deterministic; identical repeats are interchangeable).
    This order is what makes the incremental models equal to a full refresh: new loads are ranked among
    themselves and a valid winner replaces the staged row (delete+insert), which by (1) and (2) it also would in a
    full ranking; an invalid newcomer is never staged, so the staged row stays, exactly as a full ranking decides.
    The tie-break columns are only compared between versions of one key with equal validity and _loaded_at, so
    ordering by the raw values (carried as _raw_<column>) costs nothing on the vast majority of rows (unlike
    hashing every row). -#}
{% macro version_rank(key, raw_columns) -%}
    row_number() over (
        partition by {{ key }}
        order by
            case when _reject_reason is null then 0 else 1 end,
            _loaded_at desc,
            _source_file
            {%- for column in raw_columns %},
            _raw_{{ column }} nulls last
            {%- endfor %}
    )
{%- endmacro %}


{#- A link without a creation time is still usable (kept, created_at null); an unreadable one is a corrupt row. -#}
{% macro link_reject_reason() -%}
    case
        when link_id is null then 'missing_key'
        when _created_at_text is not null and created_at is null then 'invalid_created_at'
        when created_at > {{ dbt.dateadd('hour', var('future_tolerance_hours') | int, '_loaded_at') }}
            then 'future_created_at'
    end
{%- endmacro %}


{#- event_time_reject_reason(column): the WHEN branches that keep an event time inside the window the schedule can
    trust: present, a real timestamp, not later than its load plus var future_tolerance_hours (the load is "now"
    for that row, and a rebuild decides the same way), not before var event_time_floor. A row outside it is
    rejected here, so it never reaches a partition, and stg_raw__conversion_days (which the runner reads to choose
    the partitions a run covers) applies the same branches. Reads `<column>` (typed) and `_<column>_text`
    (cleaned). -#}
{% macro event_time_reject_reason(column) -%}
    when _{{ column }}_text is null then 'missing_{{ column }}'
        when {{ column }} is null then 'invalid_{{ column }}'
        when {{ column }} > {{ dbt.dateadd('hour', var('future_tolerance_hours') | int, '_loaded_at') }}
            then 'future_{{ column }}'
        when {{ column }} < cast('{{ var("event_time_floor") }}' as timestamp with time zone)
            then 'early_{{ column }}'
{%- endmacro %}


{% macro click_reject_reason() -%}
    case
        when click_id is null then 'missing_key'
        {{ link_attribution.event_time_reject_reason('clicked_at') }}
        when link_id is null then 'missing_link_id'
    end
{%- endmacro %}


{% macro conversion_reject_reason() -%}
    {%- set max_revenue = var('max_revenue') | float -%}
    case
        when conversion_id is null then 'missing_key'
        {{ link_attribution.event_time_reject_reason('converted_at') }}
        when event_type is null then 'missing_event_type'
        when _revenue_text is not null and _revenue_number is null then 'invalid_revenue'
        when _revenue_number < 0 then 'negative_revenue'
        when _revenue_number > {{ max_revenue }} then 'revenue_too_large'
        {#- Revenue in an unnamed currency cannot be converted, and assuming one would misstate it silently. #}
        when _currency is null and _revenue_number > 0 then 'missing_currency'
        when {{ link_attribution.is_invalid_currency('_currency') }} then 'invalid_currency'
    end
{%- endmacro %}


{#- is_invalid_currency(currency): true for a present code outside the ISO 4217 seed iso_4217_currencies. 'XXX'
    (no currency), test and metal codes are not money. The one currency rule of revenue, rates and spend. -#}
{% macro is_invalid_currency(currency) -%}
    ({{ currency }} is not null and {{ currency }} not in (select currency_code from {{ ref('iso_4217_currencies') }}))
{%- endmacro %}
