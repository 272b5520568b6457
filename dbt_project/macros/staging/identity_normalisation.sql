{#- Email and IP normalisation: the values that identity resolution joins on must compare equal when they denote
    the same person or network. These macros produce the normalised *clear* value; staging models hash it with
    hash_pii at once, so clear emails and IPs never leave the CTEs of a staging model.

    Each takes a column that an earlier CTE has cleaned (clean_identifier) and lower-cased, never a longer
    expression: normalize_ip refers to its input ~40 times, so an expression passed in would be copied that often.
-#}

{#- ------------------------------------------------------------------------------------------- email ------ -#}

{#- normalize_email(email): exactly one '@', non-empty local part, a dotted domain; '+tag' suffixes stripped
    for every domain; for gmail.com / googlemail.com dots are removed from the local part and the domain becomes
    gmail.com (Gmail ignores both). Anything else -> null (not an email, so not an identifier). -#}
{% macro normalize_email(c) -%}
    {%- set local = "split_part(split_part(" ~ c ~ ", '@', 1), '+', 1)" -%}
    {%- set domain = "split_part(" ~ c ~ ", '@', 2)" -%}
    case
        when length({{ c }}) - length(replace({{ c }}, '@', '')) = 1
            and {{ local }} <> ''
            and {{ domain }} like '_%._%'
            and {{ c }} not like '% %'
        then
            case
                when {{ domain }} in ('gmail.com', 'googlemail.com')
                    then nullif(replace({{ local }}, '.', ''), '') || '@gmail.com'
                else {{ local }} || '@' || {{ domain }}
            end
    end
{%- endmacro %}


{#- ---------------------------------------------------------------------------------------------- IP ------ -#}

{#- ip_candidate(ip): an IPv4-mapped IPv6 address ('::ffff:1.2.3.4') unwrapped to its IPv4 form, so a dual-stack
    server and an IPv4 server log the same visitor alike; `ip` is cleaned and lower-cased. -#}
{% macro ip_candidate(ip) -%}
    case when {{ ip }} like '::ffff:%.%.%.%' then substr({{ ip }}, 8) else {{ ip }} end
{%- endmacro %}

{#- normalize_ip(candidate): canonical IPv4 (dotted quad, every octet 0-255, leading zeros dropped) or IPv6
    (lower case, leading zeros of each group dropped; zero runs are not re-compressed), null for anything else.
    The canonicalisation only runs when a leading zero is possible, which is rare. IPv6 is 3 to 8 groups of up to
    4 hex digits ('::' is an empty group), optionally ending in an embedded IPv4. -#}
{% macro normalize_ip(c) -%}
    {%- set octet = "(25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])" -%}
    {%- set ipv4 = "(" ~ octet ~ "[.]){3}" ~ octet -%}
    {%- set ipv6 = "[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}|([0-9a-f]{0,4}:){2,6}" ~ ipv4 -%}
    case
        when {{ link_attribution.regex_full_match(c, ipv4) }} then
            case
                when {{ c }} like '0%' or {{ c }} like '%.0%' then {{ link_attribution.ipv4_canonical(c) }}
                else {{ c }}
            end
        when {{ c }} like '%:%:%' and {{ c }} not like '%::%::%' and {{ c }} not like '%:::%'
            and {{ link_attribution.regex_full_match(c, ipv6) }} then
            case
                when {{ c }} like '0%' or {{ c }} like '%:0%' then {{ link_attribution.ipv6_strip_leading_zeros(c) }}
                else {{ c }}
            end
    end
{%- endmacro %}

{#- Leading zeros go through the standard trim(leading ... from ...): Spark's two-argument ltrim takes the
    characters to remove first, the other way round from DuckDB's and PostgreSQL's. -#}
{% macro ipv4_canonical(c) -%}
    {%- set parts = [] -%}
    {%- for i in range(1, 5) -%}
        {%- do parts.append("coalesce(nullif(trim(leading '0' from split_part(" ~ c ~ ", '.', " ~ i ~ ")), ''), '0')") -%}
    {%- endfor -%}
    {{ parts | join(" || '.' || ") }}
{%- endmacro %}

{#- Each group of an IPv6 text: '' stays '' (part of '::'), embedded IPv4 stays as is, else leading zeros dropped. -#}
{% macro ipv6_strip_leading_zeros(c) -%}
    {%- set n = "(length(" ~ c ~ ") - length(replace(" ~ c ~ ", ':', '')) + 1)" -%}
    {%- for i in range(1, 9) %}
    {%- set g = "split_part(" ~ c ~ ", ':', " ~ i ~ ")" %}
    {{ "|| " if not loop.first }}case when {{ n }} >= {{ i }} then
        {{- " ':' ||" if not loop.first }} case
        when {{ g }} = '' or {{ g }} like '%.%' then {{ g }}
        else coalesce(nullif(trim(leading '0' from {{ g }}), ''), '0')
    end else '' end
    {%- endfor %}
{%- endmacro %}


{#- ------------------------------------------------------------------------------- networks (for an `ip`
    column already normalised by normalize_ip) ------------------------------------------------------------ -#}

{#- The first three IPv6 groups (a /48), zero-filled when '::' compresses them; i in 1..3. -#}
{% macro ipv6_head_group(ip, i) -%}
    {%- set head = "case when strpos(" ~ ip ~ ", '::') > 0 then substr(" ~ ip ~ ", 1, strpos(" ~ ip ~ ", '::') - 1) else " ~ ip ~ " end" -%}
    coalesce(nullif(split_part({{ head }}, ':', {{ i }}), ''), '0')
{%- endmacro %}

{#- ip_network(ip) -> '203.0.113.0/24' for IPv4, '2001:db8:abcd::/48' for IPv6, null for null. Households and
    carrier NATs share a /24 (IPv4) or a /48 (IPv6, one site's allocation): a weaker signal than the address. -#}
{% macro ip_network(ip) -%}
    case
        when {{ ip }} like '%:%' then
            {{ link_attribution.ipv6_head_group(ip, 1) }} || ':' || {{ link_attribution.ipv6_head_group(ip, 2) }}
            || ':' || {{ link_attribution.ipv6_head_group(ip, 3) }} || '::/48'
        when {{ ip }} is not null then
            split_part({{ ip }}, '.', 1) || '.' || split_part({{ ip }}, '.', 2) || '.' || split_part({{ ip }}, '.', 3)
            || '.0/24'
    end
{%- endmacro %}

{#- ipv4_to_bigint(ip): the address as an integer (null for IPv6/null), for range checks. -#}
{% macro ipv4_to_bigint(ip) -%}
    case when {{ ip }} not like '%:%' then
        {%- for i in range(1, 5) %}
        {{ "+ " if not loop.first }}cast(split_part({{ ip }}, '.', {{ i }}) as bigint) * {{ 256 ** (4 - i) }}
        {%- endfor %}
    end
{%- endmacro %}

{#- is_datacenter_ip(ip_int, ip): true when the address lies in one of var datacenter_ip_networks. The CIDR list is
    expanded at compile time into integer ranges (IPv4, `ip_int` = ipv4_to_bigint(ip)) and group comparisons
    (IPv6 /16, /32, /48), so the check is a plain portable predicate. False for a null IP. -#}
{% macro is_datacenter_ip(ip_int, ip) -%}
    {%- set v4 = [] -%}
    {%- set v6 = [] -%}
    {%- for cidr in var('datacenter_ip_networks', []) -%}
        {%- set network, bits = (cidr | string | trim | lower).split('/') -%}
        {%- set bits = bits | int -%}
        {%- if ':' in network -%}
            {%- if bits not in (16, 32, 48) -%}
                {{ exceptions.raise_compiler_error("datacenter_ip_networks: IPv6 prefix " ~ cidr ~ " must be /16, /32 or /48") }}
            {%- endif -%}
            {%- set head = network.split('::')[0].split(':') -%}
            {%- set conds = [] -%}
            {%- for i in range(bits // 16) -%}
                {%- set group = (head[i] if i < head | length else '0').lstrip('0') or '0' -%}
                {%- do conds.append(link_attribution.ipv6_head_group(ip, i + 1) ~ " = '" ~ group ~ "'") -%}
            {%- endfor -%}
            {%- do v6.append("(" ~ conds | join(" and ") ~ ")") -%}
        {%- else -%}
            {%- set o = network.split('.') | map('int') | list -%}
            {%- set start = o[0] * 16777216 + o[1] * 65536 + o[2] * 256 + o[3] -%}
            {%- set size = 2 ** (32 - bits) -%}
            {%- set start = (start // size) * size -%}
            {%- do v4.append(ip_int ~ " between " ~ start ~ " and " ~ (start + size - 1)) -%}
        {%- endif -%}
    {%- endfor -%}
    case
        {%- if v4 %}
        when {{ ip_int }} is not null then ({{ v4 | join("\n            or ") }})
        {%- endif %}
        {%- if v6 %}
        when {{ ip }} like '%:%' then ({{ v6 | join("\n            or ") }})
        {%- endif %}
        else false
    end
{%- endmacro %}
