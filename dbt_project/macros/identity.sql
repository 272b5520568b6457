{#- Helpers of the identity models (int_identity_*, int_identities, int_event_identities) and the dialect macros
    they need. The graph itself is resolved in Python (python_models.identity.resolve_identity_nodes); these macros
    hold what the SQL around it must agree on with Python: the strong types and their priority, blocked values,
    edge-type trust, and the names of identities. Every macro returns portable SQL (DuckDB and PostgreSQL); engine
    differences are dispatched (a default__ plus only the overrides needed). -#}


{#- ---------------------------------------------------------------------------------------------------------
    Dialect: 64-bit join keys, epoch microseconds, SHA-256 in hex.
--------------------------------------------------------------------------------------------------------- -#}

{#- hash64(exprs): a 64-bit hash of a list of text expressions; a join key far cheaper than the strings. Not
    collision-free: the identity models find the keys two nodes share (int_identity_key_collisions) and join those
    nodes on their strings instead. -#}
{% macro hash64(exprs) %}
    {{- return(adapter.dispatch('hash64', 'link_attribution')(exprs)) -}}
{% endmacro %}

{% macro default__hash64(exprs) -%}
    hashtextextended({{ exprs | join(' || chr(31) || ') }}, 0)
{%- endmacro %}

{% macro duckdb__hash64(exprs) -%}
    hash({{ exprs | join(', ') }})
{%- endmacro %}

{% macro spark__hash64(exprs) -%}
    xxhash64({{ exprs | join(' || chr(31) || ') }})
{%- endmacro %}


{#- epoch_us(timestamptz) -> bigint microseconds since 1970-01-01 UTC, exact (staging's epoch_seconds is a double,
    which cannot hold every microsecond of today exactly). -#}
{% macro epoch_us(expr) %}
    {{- return(adapter.dispatch('epoch_us', 'link_attribution')(expr)) -}}
{% endmacro %}

{% macro default__epoch_us(expr) -%}
    cast(extract(epoch from {{ expr }}) * 1000000 as bigint)
{%- endmacro %}

{% macro duckdb__epoch_us(expr) -%}
    epoch_us({{ expr }})
{%- endmacro %}

{% macro spark__epoch_us(expr) -%}
    unix_micros({{ expr }})
{%- endmacro %}


{#- sha256_hex(text) -> lower-case hex SHA-256 of the text's UTF-8 bytes, equal to Python's hashlib (staging's
    hash_pii is the same digest of a salted value). -#}
{% macro sha256_hex(expr) %}
    {{- return(adapter.dispatch('sha256_hex', 'link_attribution')(expr)) -}}
{% endmacro %}

{% macro default__sha256_hex(expr) -%}
    encode(sha256(convert_to({{ expr }}, 'UTF8')), 'hex')
{%- endmacro %}

{% macro duckdb__sha256_hex(expr) -%}
    sha256({{ expr }})
{%- endmacro %}

{% macro spark__sha256_hex(expr) -%}
    sha2({{ expr }}, 256)
{%- endmacro %}


{#- identity_node_number(type_expr, value_expr): the dense node number 0..n-1 of each identifier. Any numbering
    works (the graph is resolved order-free); DuckDB and PostgreSQL number rows as they come, Spark requires a window
    order (one sorted pass over the distinct identifiers). -#}
{% macro identity_node_number(type_expr, value_expr) %}
    {{- return(adapter.dispatch('identity_node_number', 'link_attribution')(type_expr, value_expr)) -}}
{% endmacro %}

{% macro default__identity_node_number(type_expr, value_expr) -%}
    row_number() over () - 1
{%- endmacro %}

{% macro spark__identity_node_number(type_expr, value_expr) -%}
    row_number() over (order by {{ type_expr }}, {{ value_expr }}) - 1
{%- endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    The identity graph's rules, shared with python_models.identity (tests/test_identity_sql_rules.py checks that
    the vars below equal the Python defaults).
--------------------------------------------------------------------------------------------------------- -#}

{#- identity_strong_types(): the strong identifier types in priority order (python_models.identity.STRONG_TYPES):
    when a split puts an event's identifiers in different identities, the event follows the first present. -#}
{% macro identity_strong_types() -%}
    {{- return(['user_id', 'email', 'cookie', 'session']) -}}
{%- endmacro %}

{#- identity_event_columns(): (type, column of int_clicks / stg_raw__conversions) in priority order. -#}
{% macro identity_event_columns() -%}
    {{- return([('user_id', 'user_id'), ('email', 'email_hash'), ('cookie', 'cookie_id'), ('session', 'session_id')]) -}}
{%- endmacro %}

{% macro identity_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}


{#- identity_blocked_values(): {type: [values]} of the strong identifiers that never link anything: var
    identity_blocked_defaults (junk tokens) plus var identity_blocked (env ATTRIBUTION_IDENTITY_BLOCKED,
    comma-separated type:value, the same variable the Python asset reads). Weak types are accepted and ignored
    (they are never nodes); an unknown type or an entry without ':' is an error. -#}
{% macro identity_blocked_values() -%}
    {%- set strong = identity_strong_types() -%}
    {%- set by_type = {} -%}
    {%- set defaults = var('identity_blocked_defaults', {}) or {} -%}
    {%- for identifier_type, values in defaults.items() -%}
        {%- for value in values -%}
            {%- do by_type.setdefault(identifier_type, []).append(value | string) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set extra = var('identity_blocked', '') -%}
    {%- set items = extra if (extra is iterable and extra is not string) else ((extra or '') | string).split(',') -%}
    {%- for raw in items -%}
        {%- set item = raw | string | trim -%}
        {%- if item -%}
            {%- if ':' not in item -%}
                {{ exceptions.raise_compiler_error("var identity_blocked (ATTRIBUTION_IDENTITY_BLOCKED): entries must be type:value, got '" ~ item ~ "'") }}
            {%- endif -%}
            {%- set identifier_type, value = item.split(':', 1) -%}
            {%- if identifier_type not in strong + ['fingerprint', 'ip'] -%}
                {{ exceptions.raise_compiler_error("var identity_blocked (ATTRIBUTION_IDENTITY_BLOCKED): unknown identifier type '" ~ identifier_type ~ "'") }}
            {%- endif -%}
            {%- do by_type.setdefault(identifier_type, []).append(value) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set out = {} -%}
    {%- for identifier_type in strong if identifier_type in by_type -%}
        {%- do out.update({identifier_type: by_type[identifier_type] | unique | sort}) -%}
    {%- endfor -%}
    {{- return(out) -}}
{%- endmacro %}


{#- identity_not_blocked(type_expr, value_expr): true unless (type, value) is a blocked strong identifier; one IN
    list per type, no string building per row. A null value is not blocked (it is simply absent). -#}
{% macro identity_not_blocked(type_expr, value_expr) -%}
    {%- set blocked = identity_blocked_values() -%}
    {%- if not blocked -%}
    1 = 1
    {%- else -%}
    {%- for identifier_type, values in blocked.items() -%}
    not ({{ type_expr }} = {{ identity_literal(identifier_type) }} and coalesce({{ value_expr }} in (
        {%- for value in values %}{{ identity_literal(value) }}{{ ', ' if not loop.last }}{% endfor -%}
    ), false)){{ ' and ' if not loop.last }}
    {%- endfor -%}
    {%- endif -%}
{%- endmacro %}


{#- identity_type_rank(type_expr) / identity_type_name(rank_expr): a strong type's index in identity_strong_types()
    (-1 for others) and back. Nodes keep the small rank, not the type's text. -#}
{% macro identity_type_rank(type_expr) -%}
    case {{ type_expr }}
    {%- for identifier_type in identity_strong_types() | sort %} when {{ identity_literal(identifier_type) }} then {{ identity_strong_types().index(identifier_type) }}{% endfor %} else -1 end
{%- endmacro %}

{% macro identity_type_name(rank_expr) -%}
    case {{ rank_expr }}
    {%- for identifier_type in identity_strong_types() %} when {{ loop.index0 }} then {{ identity_literal(identifier_type) }}{% endfor %} end
{%- endmacro %}


{#- identity_edge_trust(edge_type_expr): how much an edge type is trusted when a component must be split (higher
    = cut later; var identity_edge_type_trust, python_models.identity.DEFAULT_EDGE_TYPE_TRUST); 'a-b' and 'b-a'
    are the same edge type; unknown types rank 0. -#}
{% macro identity_edge_trust(edge_type_expr) -%}
    {%- set trust = var('identity_edge_type_trust', {}) or {} -%}
    {%- set full = {} -%}
    {%- for edge_type, value in trust.items() -%}
        {%- do full.update({edge_type: value | int}) -%}
    {%- endfor -%}
    {%- for edge_type, value in trust.items() -%}
        {%- set parts = edge_type.split('-', 1) -%}
        {%- if parts | length == 2 -%}
            {%- do full.setdefault(parts[1] ~ '-' ~ parts[0], value | int) -%}
        {%- endif -%}
    {%- endfor -%}
    case {{ edge_type_expr }}
    {%- for edge_type in full | sort %} when {{ identity_literal(edge_type) }} then {{ full[edge_type] }}{% endfor %} else 0 end
{%- endmacro %}


{#- identity_node_key(type_expr, value_expr): the 64-bit join key of an identifier, null for a null value (a
    missing identifier never matches a node). Var identity_key_bits (default 64) keeps only that many low bits:
    lowered by tests alone, to make keys collide and prove the joins exact anyway. -#}
{% macro identity_node_key(type_expr, value_expr) -%}
    {%- set bits = var('identity_key_bits', 64) | int -%}
    {%- if bits < 64 -%}
    case when {{ value_expr }} is not null then ({{ hash64([type_expr, value_expr]) }} & {{ 2 ** bits - 1 }}) end
    {%- else -%}
    case when {{ value_expr }} is not null then {{ hash64([type_expr, value_expr]) }} end
    {%- endif -%}
{%- endmacro %}


{#- identity_short_hash(prefix, text_expr): prefix || the first 16 hex characters of the text's SHA-256, the form
    of identity ids ('idn_') and of the identities of events without an identifier ('evt_'). -#}
{% macro identity_short_hash(prefix, text_expr) -%}
    {{ identity_literal(prefix) }} || substr({{ sha256_hex(text_expr) }}, 1, 16)
{%- endmacro %}


{#- identity_duckdb_write_settings(enabled): pre-/post-hook of the large identity tables on DuckDB. Their strings
    are hashes and hash-derived ids, which dictionary/FSST compression barely shrinks but spent ~3 s analysing per
    write of the identifier map alone at 10M clicks; stored plain. Row order means nothing in them, so DuckDB may
    also write them in parallel. Nothing to do on PostgreSQL. -#}
{% macro identity_duckdb_write_settings(enabled) -%}
    {{- return(adapter.dispatch('identity_duckdb_write_settings', 'link_attribution')(enabled)) -}}
{%- endmacro %}

{% macro default__identity_duckdb_write_settings(enabled) -%}{%- endmacro %}

{% macro duckdb__identity_duckdb_write_settings(enabled) -%}
    {%- if enabled -%}
    set preserve_insertion_order = false; set disabled_compression_methods = 'dict_fsst'
    {%- else -%}
    set preserve_insertion_order = true; reset disabled_compression_methods
    {%- endif -%}
{%- endmacro %}


{#- identity_representatives(where=none): every node's identity as the Python identity asset left it, node ->
    rep_node: the last re-fit's resolution (source python.identity_representatives) with the hourly merges since
    applied (a fitted identity that joined another forwards to it, python.identity_forwards; nodes first seen since
    the re-fit, python.identity_added_nodes). No rows before the first resolution (then there are no identities
    yet). `where`, a condition on `node`, is applied inside each part, so a lookup of a few nodes reads them through
    the tables' indexes. -#}
{% macro identity_representatives(where=none) -%}
    {%- set fitted = source('python', 'identity_representatives') -%}
    {%- set forwards = source('python', 'identity_forwards') -%}
    {%- set added = source('python', 'identity_added_nodes') -%}
    {%- set filter = 'where ' ~ where if where else '' -%}
    {%- if int_relation_exists(fitted) %}
    select
        fitted.node,
        {% if int_relation_has_rows(forwards) -%}
        coalesce(forwards.rep_node, fitted.rep_node) as rep_node
    from {{ fitted }} as fitted
    left join {{ forwards }} as forwards
        on forwards.old_rep = fitted.rep_node
        {%- else -%}
        fitted.rep_node
    from {{ fitted }} as fitted
        {%- endif %}
    {{ filter }}
    {%- if int_relation_has_rows(added) %}
    union all
    select node, rep_node from {{ added }}
    {{ filter }}
    {%- endif %}
    {%- else %}
    select cast(null as bigint) as node, cast(null as bigint) as rep_node
    where 1 = 0
    {%- endif %}
{%- endmacro %}


{#- identity_nodes(where=none): the graph's nodes, int_identity_nodes of the last re-fit and those the hourly merges
    added since (python.identity_added_nodes), with the columns the identity models read; `where` as above. -#}
{% macro identity_nodes(where=none) -%}
    {%- set added = source('python', 'identity_added_nodes') %}
    {%- set filter = 'where ' ~ where if where else '' %}
    select node, type_rank, identifier_value, node_key, first_seen_us from {{ ref('int_identity_nodes') }}
    {{ filter }}
    {%- if int_relation_has_rows(added) %}
    union all
    select node, type_rank, identifier_value, node_key, first_seen_us from {{ added }}
    {{ filter }}
    {%- endif %}
{%- endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    Edges: the rows of int_identity_edges, written once for the whole graph and for the hourly increment
    (int_identity_increment_edges), which apply them to all events and to newly loaded ones.
--------------------------------------------------------------------------------------------------------- -#}

{#- identity_edge_columns(): (strong identifier type, column) in byte order of the type, so the left column of
    every pair is the smaller type and an edge is stored once, canonically. -#}
{% macro identity_edge_columns() -%}
    {{- return([('cookie', 'cookie_id'), ('email', 'email_hash'), ('session', 'session_id'), ('user_id', 'user_id')]) -}}
{%- endmacro %}

{#- identity_events_wide(clicks, conversions): one row per event of the two relations (non-bot clicks and
    conversions), observed_at, _loaded_at and one text column per strong identifier. -#}
{% macro identity_events_wide(clicks, conversions) -%}
    {%- for relation, observed_at in [(clicks, 'clicked_at'), (conversions, 'converted_at')] %}
    select
        {{ observed_at }} as observed_at,
        _loaded_at,
        {%- for _, column in identity_edge_columns() %}
        cast({{ column }} as {{ dbt.type_string() }}) as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ relation }}
    {{ "union all" if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- identity_co_occurrences(events): an edge per pair of strong identifiers seen on one event of `events`
    (identity_events_wide), edge_type '<left>-<right>'. Each pair of types is aggregated on its own (its edge_type
    is its own, so no edge spans two): a hash table keyed by two values of one pair instead of one keyed by five
    columns of all 10.6M edges of 10M clicks, which ran DuckDB out of its 2GB. -#}
{% macro identity_co_occurrences(events) -%}
    {%- for (left_type, left_column), (right_type, right_column) in int_ordered_pairs(identity_edge_columns()) %}
    select
        '{{ left_type }}' as left_type,
        {{ left_column }} as left_value,
        '{{ right_type }}' as right_type,
        {{ right_column }} as right_value,
        '{{ left_type }}-{{ right_type }}' as edge_type,
        count(*) as n_events,
        min(observed_at) as first_seen_at,
        max(observed_at) as last_seen_at
    from {{ events }}
    where {{ left_column }} is not null
        and {{ right_column }} is not null
    group by {{ left_column }}, {{ right_column }}
    {{ "union all" if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- identity_direct_click_pairs(conversions, clicks): the conversion's cookie and the cookie of the non-bot click
    it carries in direct_click_id, when they differ (the same person in another browser or after a cookie reset),
    in canonical order, with the conversion's time. -#}
{% macro identity_direct_click_pairs(conversions, clicks) -%}
    {%- set less = int_bytewise_less(conversions ~ '.cookie_id', clicks ~ '.cookie_id') %}
    select
        'cookie' as left_type,
        case when {{ less }} then {{ conversions }}.cookie_id else {{ clicks }}.cookie_id end as left_value,
        'cookie' as right_type,
        case when {{ less }} then {{ clicks }}.cookie_id else {{ conversions }}.cookie_id end as right_value,
        {{ conversions }}.converted_at as observed_at
    from {{ conversions }}
    inner join {{ clicks }}
        on {{ conversions }}.direct_click_id = {{ clicks }}.click_id
    where {{ conversions }}.cookie_id is not null
        and {{ clicks }}.cookie_id is not null
        and {{ conversions }}.cookie_id <> {{ clicks }}.cookie_id
{%- endmacro %}

{#- identity_edges(events, pairs): every edge: the co-occurrences on `events` (identity_co_occurrences) and the
    direct-click `pairs` (identity_direct_click_pairs) as edges of type 'direct_click-cookie'. -#}
{% macro identity_edges(events, pairs) -%}
    {{ identity_co_occurrences(events) }}
    union all
    select
        left_type,
        left_value,
        right_type,
        right_value,
        'direct_click-cookie' as edge_type,
        count(*) as n_events,
        min(observed_at) as first_seen_at,
        max(observed_at) as last_seen_at
    from {{ pairs }}
    group by left_type, left_value, right_type, right_value
{%- endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    The hourly merge: the state the identity asset keeps between re-fits, and what its increment reads.
--------------------------------------------------------------------------------------------------------- -#}

{#- identity_graph_state(): the identity asset's state table (intermediate.identity_graph_state, beside the model),
    or none before its first write, at parse time, or in a unit test (whose `this` is its given rows). -#}
{% macro identity_graph_state() -%}
    {%- if not execute or this is string -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(adapter.get_relation(database=this.database, schema=this.schema, identifier='identity_graph_state')) -}}
{%- endmacro %}

{#- identity_graph_mark(): the newest event load the stored identity graph covers, as the identity asset last
    recorded it (intermediate.identity_graph_state, after a re-fit or an hourly merge); none before the first.
    Looked up, not named with source(): the increment feeds the asset that writes the mark, and a source would make
    that a cycle. A literal on PostgreSQL (so the load-stamp indexes serve it, see stored_watermark), else a scalar
    subquery. -#}
{% macro identity_graph_mark() -%}
    {%- set state = identity_graph_state() -%}
    {%- if state is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- if target.type == 'postgres' and reads_built_table(this) -%}
        {%- set value = run_query("select cast(max(loaded_through) as text) from " ~ state).columns[0].values()[0] -%}
        {{- return(int_timestamptz_literal(value) if value is not none else none) -}}
    {%- endif -%}
    {{- return('(select max(loaded_through) from ' ~ state ~ ')') -}}
{%- endmacro %}

{#- identity_since_mark(mark): the filter of events loaded after the graph's mark (all events without one). -#}
{% macro identity_since_mark(mark) -%}
    {{- '_loaded_at > ' ~ mark if mark else '1 = 1' -}}
{%- endmacro %}

{#- identity_optional(relation, empty_select): `select * from relation`, or `empty_select` (typed, no rows) while
    the relation does not exist yet (before the identity asset's first write). -#}
{% macro identity_optional(relation, empty_select) -%}
    {%- if int_relation_exists(relation) -%}
    select * from {{ relation }}
    {%- else -%}
    {{ empty_select }} where 1 = 0
    {%- endif -%}
{%- endmacro %}

{#- identity_fitted_at(): when the identities were last re-fitted (identity_graph_state.fitted_at, text), which an
    hourly merge keeps; none before the first re-fit. -#}
{% macro identity_fitted_at() -%}
    {%- set state = identity_graph_state() -%}
    {%- if state is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(run_query('select max(fitted_at) from ' ~ state).columns[0].values()[0]) -}}
{%- endmacro %}

{#- identity_refit_since_build(relation): whether the identities were re-fitted since `relation` was built (its
    _identities_fitted_at, the same on every row, differs from identity_fitted_at()). A re-fit may move any event to
    another identity; an hourly merge moves only the events of the identities it forwards. -#}
{% macro identity_refit_since_build(relation) -%}
    {%- if not reads_built_table(relation) -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set built = adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier) -%}
    {%- if built is none -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- if '_identities_fitted_at' not in (adapter.get_columns_in_relation(built) | map(attribute='name') | map('lower') | list) -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- set stored = run_query('select max(_identities_fitted_at) from (select _identities_fitted_at from ' ~ built
                               ~ ' limit 1) as stored').columns[0].values()[0] -%}
    {{- return(stored != identity_fitted_at()) -}}
{%- endmacro %}
