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

{#- ip_candidate(ip): the address out of its wrappings: the brackets of a URL host ('[2001:db8::1]') and an IPv6
    zone id ('fe80::1%eth0': the interface is the logger's, not the visitor's). `ip` is cleaned and lower-cased.
    IPv4-mapped addresses in every spelling are unwrapped later, by ip_canonical. -#}
{% macro ip_candidate(ip) -%}
    {%- set unbracketed = "case when " ~ ip ~ " like '[%]' then substr(" ~ ip ~ ", 2, length(" ~ ip ~ ") - 2) else " ~ ip ~ " end" -%}
    case
        when strpos({{ ip }}, '%') > 0 and strpos({{ ip }}, ':') > 0 then split_part({{ unbracketed }}, '%', 1)
        else {{ unbracketed }}
    end
{%- endmacro %}

{#- normalize_ip(candidate): a valid IPv4 (dotted quad, every octet 0-255, leading zeros dropped) or IPv6 text
    (lower case, leading zeros of each group dropped), null for anything else; ip_canonical then gives every
    spelling of an IPv6 address one text. The canonicalisation only runs when a leading zero is possible, which is
    rare. IPv6 is 3 to 8 groups of up to 4 hex digits ('::' is an empty group), optionally ending in an embedded
    IPv4. -#}
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


{#- ipv6_embedded_ipv4_as_hex(ip): an IPv6 address ending in a dotted IPv4 ('::ffff:192.0.2.1',
    '64:ff9b::192.0.2.1') with those 32 bits written as two hex groups ('::ffff:c000:201'), so that both spellings
    of one address expand alike; anything else unchanged. `ip` comes from normalize_ip. -#}
{% macro ipv6_embedded_ipv4_as_hex(ip) -%}
    {%- set last_colon = "(length(" ~ ip ~ ") - strpos(reverse(" ~ ip ~ "), ':') + 1)" -%}
    {%- set tail = "substr(" ~ ip ~ ", " ~ last_colon ~ " + 1)" -%}
    {%- set octets = [] -%}
    {%- for i in range(1, 5) -%}
        {%- do octets.append("cast(split_part(" ~ tail ~ ", '.', " ~ i ~ ") as integer)") -%}
    {%- endfor -%}
    case
        when {{ ip }} like '%:%.%' then
            substr({{ ip }}, 1, {{ last_colon }})
            || {{ link_attribution.int_to_hex(octets[0] ~ " * 256 + " ~ octets[1]) }} || ':'
            || {{ link_attribution.int_to_hex(octets[2] ~ " * 256 + " ~ octets[3]) }}
        else {{ ip }}
    end
{%- endmacro %}

{#- ipv6_expand(ip): an IPv6 address (from ipv6_embedded_ipv4_as_hex) as its eight groups, '::' filled with zero
    groups ('2001:db8::1' -> '2001:db8:0:0:0:0:0:1'); null when the groups do not add up to eight (too many, too
    few without '::', an empty group at either end). IPv4 and null pass unchanged. -#}
{% macro ipv6_expand(ip) -%}
    {%- set head = "split_part(" ~ ip ~ ", '::', 1)" -%}
    {%- set tail = "split_part(" ~ ip ~ ", '::', 2)" -%}
    {%- set head_groups = "case when " ~ head ~ " = '' then 0 else length(" ~ head ~ ") - length(replace(" ~ head ~ ", ':', '')) + 1 end" -%}
    {%- set tail_groups = "case when " ~ tail ~ " = '' then 0 else length(" ~ tail ~ ") - length(replace(" ~ tail ~ ", ':', '')) + 1 end" -%}
    {%- set zero_groups = "(8 - (" ~ head_groups ~ ") - (" ~ tail_groups ~ "))" -%}
    case
        when {{ ip }} not like '%:%' then {{ ip }}
        when {{ ip }} like ':%' and {{ ip }} not like '::%' then null
        when {{ ip }} like '%:' and {{ ip }} not like '%::' then null
        when strpos({{ ip }}, '::') = 0 then
            case when length({{ ip }}) - length(replace({{ ip }}, ':', '')) = 7 then {{ ip }} end
        when {{ zero_groups }} >= 1 then
            case when {{ head }} = '' then '' else {{ head }} || ':' end
            || substr(repeat('0:', {{ zero_groups }}), 1, 2 * {{ zero_groups }} - 1)
            || case when {{ tail }} = '' then '' else ':' || {{ tail }} end
    end
{%- endmacro %}

{#- ip_canonical(ip): the one spelling every form of an address hashes to. An IPv4-mapped IPv6 address becomes
    its IPv4 dotted quad (a dual-stack server and an IPv4 server log one visitor alike); any other IPv6 address
    takes its RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups (the first,
    on a tie) written '::'. `ip` comes from ipv6_expand (eight groups) or is IPv4 or null. -#}
{% macro ip_canonical(ip) -%}
    {%- set framed = "(':' || " ~ ip ~ " || ':')" -%}
    case
        when {{ ip }} not like '%:%' then {{ ip }}
        when {{ ip }} like '0:0:0:0:0:ffff:%' then
            {%- set hi = link_attribution.hex_to_int("split_part(" ~ ip ~ ", ':', 7)") %}
            {%- set lo = link_attribution.hex_to_int("split_part(" ~ ip ~ ", ':', 8)") %}
            cast(cast(({{ hi }} - mod({{ hi }}, 256)) / 256 as integer) as varchar) || '.'
            || cast(mod({{ hi }}, 256) as varchar) || '.'
            || cast(cast(({{ lo }} - mod({{ lo }}, 256)) / 256 as integer) as varchar) || '.'
            || cast(mod({{ lo }}, 256) as varchar)
        {%- for run in range(8, 1, -1) %}
        {%- set pattern = "':" ~ ("0:" * run) ~ "'" %}
        {%- set at = "strpos(" ~ framed ~ ", " ~ pattern ~ ")" %}
        {%- set before = "substr(" ~ framed ~ ", 1, " ~ at ~ " - 1)" %}
        {%- set after = "substr(" ~ framed ~ ", " ~ at ~ " + " ~ (2 * run + 1) ~ ")" %}
        when {{ at }} > 0 then
            case when {{ at }} = 1 then '' else substr({{ before }}, 2) end
            || '::'
            || case when {{ after }} = '' then '' else substr({{ after }}, 1, length({{ after }}) - 1) end
        {%- endfor %}
        else {{ ip }}
    end
{%- endmacro %}

{#- int_to_hex(n) / hex_to_int(text): a 16-bit IPv6 group between its integer and its lower-case hex text. -#}
{% macro int_to_hex(expr) -%}
    {{- return(adapter.dispatch('int_to_hex', 'link_attribution')(expr)) -}}
{%- endmacro %}

{% macro default__int_to_hex(expr) -%}
    to_hex({{ expr }})
{%- endmacro %}

{% macro duckdb__int_to_hex(expr) -%}
    lower(to_hex({{ expr }}))
{%- endmacro %}

{% macro spark__int_to_hex(expr) -%}
    lower(hex({{ expr }}))
{%- endmacro %}

{% macro hex_to_int(expr) -%}
    {{- return(adapter.dispatch('hex_to_int', 'link_attribution')(expr)) -}}
{%- endmacro %}

{% macro default__hex_to_int(expr) -%}
    cast(cast('x' || lpad({{ expr }}, 8, '0') as bit(32)) as integer)
{%- endmacro %}

{% macro duckdb__hex_to_int(expr) -%}
    cast('0x' || {{ expr }} as integer)
{%- endmacro %}

{#- Spark has neither bit strings nor hex literals in casts: conv() turns base 16 into base 10 text. -#}
{% macro spark__hex_to_int(expr) -%}
    cast(conv({{ expr }}, 16, 10) as integer)
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
