{#- Values dropped from rows that are otherwise staged: one row per (raw table, key, column) whose value was
    delivered but is unusable, so a dropped value is counted instead of silently becoming "none". Today: an IP that
    is no address (invalid_ip); the staged row keeps a null ip_hash. Each distinct raw IP is parsed once, by the
    staged models' own macros (ip_candidate -> normalize_ip -> ipv6_embedded_ipv4_as_hex -> ipv6_expand ->
    ip_canonical), so this model and the hashes agree on what an address is.

    Incremental (delete+insert on the row's key; a table on Spark): a run reads only the raw loads newer than its
    load mark, the newest load the staged tables held when it last ran (macro read_load_mark says why not its
    newest row: most loads carry no unusable value). A key's row only ever gains a newer load stamp (any of its
    versions with an unusable value lists it), so replacing the keys a run sees gives what a full build gives. #}
{{
    config(
        post_hook=["{{ record_load_mark(['stg_raw__clicks', 'stg_raw__conversions']) }}"],
        **incremental_config(['source_table', 'record_key', 'column_name'], 'fail')
    )
}}
-- depends_on: {{ ref('stg_raw__clicks') }}
-- depends_on: {{ ref('stg_raw__conversions') }}
{%- set load_mark = read_load_mark(this) if is_incremental() %}

with

raw_ips as (
    select
        'clicks' as source_table,
        {{ clean_identifier('click_id') }} as record_key,
        coalesce(ip, '') as _ip_key,
        _loaded_at
    from {{ source('raw', 'clicks') }}
    {%- if is_incremental() %}
    where _loaded_at > {{ load_mark }}
    {%- endif %}
    union all
    select
        'conversions' as source_table,
        {{ clean_identifier('conversion_id') }} as record_key,
        coalesce(ip, '') as _ip_key,
        _loaded_at
    from {{ source('raw', 'conversions') }}
    {%- if is_incremental() %}
    where _loaded_at > {{ load_mark }}
    {%- endif %}
),

ip_values as (
    select
        _ip_key,
        lower({{ clean_identifier('_ip_key') }}) as _ip_text
    from (select distinct _ip_key from raw_ips) as distinct_ips
    {{ stage_fence() }}
),

ip_candidates as (
    select
        ip_values.*,
        {{ ip_candidate('_ip_text') }} as _ip_candidate
    from ip_values
    {#- A value raw retention replaced by its hash was an address staging had already read. #}
    where _ip_text is not null and _ip_text not like 'sha256:%'
    {{ stage_fence() }}
),

ip_normalised as (
    select
        ip_candidates.*,
        {{ normalize_ip('_ip_candidate') }} as _ip_valid
    from ip_candidates
    {{ stage_fence() }}
),

ip_hexed as (
    select
        ip_normalised.*,
        {{ ipv6_embedded_ipv4_as_hex('_ip_valid') }} as _ip_hexed
    from ip_normalised
    {{ stage_fence() }}
),

ip_expanded as (
    select
        ip_hexed.*,
        {{ ipv6_expand('_ip_hexed') }} as _ip_expanded
    from ip_hexed
    {{ stage_fence() }}
),

invalid_ips as (
    select _ip_key
    from ip_expanded
    where {{ ip_canonical('_ip_expanded') }} is null
),

final as (
    select
        raw_ips.source_table,
        raw_ips.record_key,
        'ip' as column_name,
        'invalid_ip' as reason,
        max(raw_ips._loaded_at) as _loaded_at
    from raw_ips
    inner join invalid_ips on invalid_ips._ip_key = raw_ips._ip_key
    where raw_ips.record_key is not null
    group by 1, 2, 3, 4
)

select * from final
