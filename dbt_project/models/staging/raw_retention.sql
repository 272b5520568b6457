{#- Raw retention, as a step of every run: its pre-hook (macro apply_raw_retention) replaces the identifiers of raw
    rows loaded more than var raw_retention_days ago by their salted hashes; the table it builds says how many raw
    rows are past the window and how many of them still hold a clear identifier (0 after the hook). It runs
    after the staged models and the quarantine (their refs below), which have read those rows already. #}
{{ config(pre_hook=["{{ link_attribution.apply_raw_retention() }}"]) }}
-- depends_on: {{ ref('stg_raw__clicks') }}
-- depends_on: {{ ref('stg_raw__conversions') }}
-- depends_on: {{ ref('rejected_rows') }}
-- depends_on: {{ ref('rejected_values') }}

with

{%- for table, columns in retention_columns().items() %}

{{ table }}_past_window as (
    select
        '{{ table }}' as source_table,
        count(*) as rows_past_window,
        coalesce(sum(case when
            {%- for column in columns %}
            ({{ link_attribution.clean_identifier(column) }} is not null and {{ column }} not like 'sha256:%'){{ " or" if not loop.last }}
            {%- endfor %}
        then 1 else 0 end), 0) as rows_with_clear_identifiers
    from {{ source('raw', table) }}
    where {{ retention_scope(table) }}
),
{%- endfor %}

final as (
    select * from clicks_past_window
    union all
    select * from conversions_past_window
)

select
    source_table,
    cast(rows_past_window as bigint) as rows_past_window,
    cast(rows_with_clear_identifiers as bigint) as rows_with_clear_identifiers,
    {{ var('raw_retention_days') | int }} as retention_days
from final
