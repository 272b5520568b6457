{#- spend_versions(): every raw.spend row cleaned, typed, with its reject reason and its version rank, as the body
    of a subquery. stg_raw__spend keeps the valid best versions, rejected_rows the invalid ones: one definition, so
    every raw key lands in exactly one of the two.

    A row gives what was spent on one day for exactly one entity: a link, a campaign, a creator or a channel. Its
    key is (entity type, entity, day, currency): the day's total for that entity in that currency, so a later load
    corrects an earlier one (at-least-once delivery repeats rows; summing repeats would double the spend). Channels
    are lower-cased as stg_raw__links does, so channel spend meets the links' channels. Amounts keep 2 decimals
    of the delivered value; zero is a valid amount (a paused campaign). -#}
{% macro spend_versions() -%}
    {%- set raw_columns = ['spend_date', 'link_id', 'campaign_id', 'creator_id', 'channel', 'amount', 'currency'] -%}
    {%- set max_amount = var('max_revenue') | float -%}
    select
        typed.*,
        _spend_key as spend_id,
        case when _reject_reason is null then cast(_amount_number as numeric(18, 2)) end as amount,
        {{ version_rank('_spend_key', raw_columns) }} as _version_rank
    from (
        select
            typed.*,
            case
                when _spend_date_text is null then 'missing_spend_date'
                when spend_date is null then 'invalid_spend_date'
                when _entity_count = 0 then 'missing_entity'
                when _entity_count > 1 then 'multiple_entities'
                when _amount_text is null then 'missing_amount'
                when _amount_number is null then 'invalid_amount'
                when _amount_number < 0 then 'negative_amount'
                {#- The same plausibility bound as revenue (var max_revenue). #}
                when _amount_number > {{ max_amount }} then 'amount_too_large'
                when currency is null then 'missing_currency'
                when {{ is_invalid_currency('currency') }} then 'invalid_currency'
            end as _reject_reason,
            {#- Rows without a usable key rank among themselves under one null key; rejected_rows keeps them all. #}
            case
                when spend_date is not null and _entity_count = 1
                    then entity_type || '|' || entity_id || '|' || cast(spend_date as {{ dbt.type_string() }})
                        || '|' || coalesce(currency, '')
            end as _spend_key
        from (
            select
                cleaned.*,
                case
                    when {{ regex_full_match('_spend_date_text', '[0-9]{4}-[0-9]{2}-[0-9]{2}') }}
                        then {{ utc_date(safe_cast_timestamptz("_spend_date_text || 'T00:00:00+00:00'")) }}
                end as spend_date,
                {{ safe_cast_numeric('_amount_text') }} as _amount_number,
                case when link_id is null then 0 else 1 end
                    + case when campaign_id is null then 0 else 1 end
                    + case when creator_id is null then 0 else 1 end
                    + case when channel is null then 0 else 1 end as _entity_count,
                case
                    when link_id is not null then 'link_id'
                    when campaign_id is not null then 'campaign_id'
                    when creator_id is not null then 'creator_id'
                    when channel is not null then 'channel'
                end as entity_type,
                coalesce(link_id, campaign_id, creator_id, channel) as entity_id
            from (
                select
                    {{ clean_identifier('spend_date') }} as _spend_date_text,
                    {{ clean_identifier('link_id') }} as link_id,
                    {{ clean_identifier('campaign_id') }} as campaign_id,
                    {{ clean_identifier('creator_id') }} as creator_id,
                    lower({{ clean_identifier('channel') }}) as channel,
                    {{ clean_text('amount') }} as _amount_text,
                    upper({{ clean_identifier('currency') }}) as currency,
                    {%- for column in raw_columns %}
                    {{ column }} as _raw_{{ column }},
                    {%- endfor %}
                    _source_file,
                    _loaded_at
                from {{ source('raw', 'spend') }}
            ) as cleaned
        ) as typed
    ) as typed
{%- endmacro %}

