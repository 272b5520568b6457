{#- popularity_members(clicks): what the candidates' popularity guards count, as the distinct (value, member) pairs
    of `clicks` (a relation or CTE of non-bot clicks with device_fingerprint, cookie_id, ip_hash, user_agent and
    _loaded_at), each with the first load that brought it: a fingerprint's cookies, an IP's fingerprints, an (IP,
    user agent)'s cookies. A value's popularity is its number of members. Each kind is grouped on its own (the
    kinds never share a pair): one aggregate over all three ran DuckDB at L (15M pairs) out of its 2 GB. -#}
{% macro popularity_members(clicks) %}
    {%- set kinds = [
        ('fingerprint', 'device_fingerprint', 'cookie_id', ['device_fingerprint', 'cookie_id']),
        ('ip', 'ip_hash', 'device_fingerprint', ['ip_hash', 'device_fingerprint']),
        ('ip_ua', popularity_ip_ua_value('ip_hash', 'user_agent'), 'cookie_id', ['ip_hash', 'user_agent', 'cookie_id']),
    ] %}
    {%- for kind, value, member, required in kinds %}
    select
        '{{ kind }}' as value_kind,
        {{ value }} as value,
        {{ member }} as member,
        min(_loaded_at) as first_loaded_at
    from {{ clicks }}
    where {{ required | join(' is not null and ') }} is not null
    group by {{ value }}, {{ member }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
{% endmacro %}


{#- popularity_counts(members, kind, count_name, values): the popularity of each value of `kind` (its number of
    members in `members`), as columns value and `count_name`; only of the values `values` selects when given. -#}
{% macro popularity_counts(members, kind, count_name, values=none) %}
    select
        value,
        count(*) as {{ count_name }}
    from {{ members }}
    where value_kind = '{{ kind }}'
    {%- if values %}
        and value in ({{ values }})
    {%- endif %}
    group by value
{% endmacro %}


{#- popularity_ip_ua_value(ip_hash, user_agent): an (IP, user agent) as one value of 32 characters (MD5 of both),
    since the user agents (150 characters on average) would make the members table as large as the clicks it
    replaces. -#}
{% macro popularity_ip_ua_value(ip_hash, user_agent) -%}
    md5({{ ip_hash }} || chr(31) || {{ user_agent }})
{%- endmacro %}
