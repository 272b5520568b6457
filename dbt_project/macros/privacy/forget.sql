{#- Erasing a person (`attribution forget`) and the suppression list that keeps them erased. Operations, run with
    `dbt run-operation`; the person's identifiers arrive through environment variables, never as --args, so that
    dbt's logs (which record the command line) never hold them. -#}

{#- The suppression list: one row per erased identifier, as a hash of its salted hash only (suppression_key), so
    that not even the hash the warehouse used for the person stays anywhere. Created by the on-run-start hook, so
    staging can always read it; it lives in schema raw, so `attribution backup` keeps it with the data it
    filters. -#}
{% macro suppressions_relation() -%}
    {{ api.Relation.create(database=link_attribution.target_database(), schema='raw', identifier='suppressions') }}
{%- endmacro %}

{#- suppression_key(hashed): the list's key of an identifier whose salted hash (email_hash, or hash_pii of a user
    id or cookie) is `hashed`. -#}
{% macro suppression_key(hashed) -%}
    {{ link_attribution.sha256_hex("(" ~ hashed ~ ") || ':suppressed'") }}
{%- endmacro %}

{% macro create_suppressions() %}
    {{- return(adapter.dispatch('create_suppressions', 'link_attribution')()) -}}
{% endmacro %}

{% macro default__create_suppressions() %}
    create schema if not exists raw;
    create table if not exists {{ link_attribution.suppressions_relation() }} (
        identifier_type varchar not null,
        identifier_hash varchar not null,
        suppressed_at timestamp with time zone not null
    )
{% endmacro %}

{#- Spark runs one statement per call (the schema is created first, at render time), knows neither varchar without
    a length nor timestamp with time zone (its timestamp is an instant), and a plain Parquet table takes no NOT NULL. -#}
{% macro spark__create_suppressions() %}
    {%- if execute -%}
        {%- do run_query('create schema if not exists raw') -%}
    {%- endif %}
    create table if not exists {{ link_attribution.suppressions_relation() }} (
        identifier_type string,
        identifier_hash string,
        suppressed_at timestamp
    ) using parquet
{% endmacro %}


{#- suppressed_reason(email_hash, user_id, cookie_id): 'suppressed' when a row carries an erased identifier, for the
    staged models and rejected_rows (a re-delivered row of an erased person is dropped at staging and counted).
    Arguments are columns of the calling CTE. The user id and cookie are only hashed while the list holds
    anything, so an empty list costs one lookup per statement. -#}
{% macro suppressed_reason(email_hash, user_id, cookie_id) -%}
    {%- set list = link_attribution.suppressions_relation() -%}
    case
        when exists (select 1 from {{ list }}) and (
            {{ link_attribution.suppression_key(email_hash) }}
                in (select identifier_hash from {{ list }} where identifier_type = 'email')
            or {{ link_attribution.suppression_key(link_attribution.hash_pii(user_id)) }}
                in (select identifier_hash from {{ list }} where identifier_type = 'user_id')
            or {{ link_attribution.suppression_key(link_attribution.hash_pii(cookie_id)) }}
                in (select identifier_hash from {{ list }} where identifier_type = 'cookie')
        ) then 'suppressed'
    end
{%- endmacro %}


{#- forget_person(): erase one person from raw, staging and int_clicks and suppress their identifiers. The person is given by
    ATTRIBUTION_FORGET_EMAIL / _USER_ID / _COOKIE (any of them) and grows to every email, user id and cookie of the
    identities holding one of them (int_identity_map, when the pipeline has run). Their clicks are deleted;
    their conversions stay as anonymous revenue (every identifier, the user agent and the direct click id
    blanked in raw, nulled in staging). Everything derived (identities, candidates, scores, credits, marts) is
    rebuilt by the next run, which `attribution forget` starts itself. Prints one `forget:` line per table. -#}
{% macro forget_person() %}
    {%- set given = {
        'email': env_var('ATTRIBUTION_FORGET_EMAIL', '') | trim | lower,
        'user_id': env_var('ATTRIBUTION_FORGET_USER_ID', '') | trim,
        'cookie': env_var('ATTRIBUTION_FORGET_COOKIE', '') | trim,
    } -%}
    {%- if not (given['email'] or given['user_id'] or given['cookie']) -%}
        {{ exceptions.raise_compiler_error("forget_person: set ATTRIBUTION_FORGET_EMAIL, _USER_ID or _COOKIE") }}
    {%- endif -%}
    {%- set raw_clicks = api.Relation.create(database=link_attribution.target_database(), schema='raw', identifier='clicks') -%}
    {%- set raw_conversions = api.Relation.create(database=link_attribution.target_database(), schema='raw', identifier='conversions') -%}
    {%- set identity_map = adapter.get_relation(database=link_attribution.target_database(), schema='intermediate', identifier='int_identity_map') -%}
    {%- set event_identities = adapter.get_relation(database=link_attribution.target_database(), schema='intermediate', identifier='int_event_identities') -%}
    {%- set int_clicks = adapter.get_relation(database=link_attribution.target_database(), schema='intermediate', identifier='int_clicks') -%}
    {%- set staged = {} -%}
    {%- for name in ['stg_raw__clicks', 'stg_raw__conversions', 'rejected_rows', 'rejected_values'] -%}
        {%- do staged.update({name: adapter.get_relation(database=link_attribution.target_database(), schema='staging', identifier=name)}) -%}
    {%- endfor -%}

    {#- The person's identifiers as staging writes them: the email normalised and hashed, the others trimmed. -#}
    {%- set given_rows = [] -%}
    {%- if given['email'] -%}
        {%- do given_rows.append("select 'email' as identifier_type, " ~ link_attribution.hash_pii(link_attribution.normalize_email('v'))
                                ~ " as identifier_value from (select '" ~ given['email'].replace("'", "''") ~ "' as v) as given_email") -%}
    {%- endif -%}
    {%- for kind in ['user_id', 'cookie'] if given[kind] -%}
        {%- do given_rows.append("select '" ~ kind ~ "' as identifier_type, '" ~ given[kind].replace("'", "''") ~ "' as identifier_value") -%}
    {%- endfor -%}
    {#- The rows to erase are fixed in scratch tables before anything changes (on Spark real tables: a view would be
        read again after raw is rewritten, and find nothing); a scratch table left by an interrupted erasure goes. -#}
    {%- do link_attribution.drop_scratch_tables() -%}
    {%- set identifiers_sql -%}
        with given as (
            {{ given_rows | join('\n            union all\n            ') }}
        )
        {%- if identity_map is not none %},
        identities as (
            select distinct identity_map.identity_id
            from {{ identity_map }} as identity_map
            inner join given
                on given.identifier_type = identity_map.identifier_type
                and given.identifier_value = identity_map.identifier_value
        )
        select identifier_type, identifier_value from given
        union
        select identity_map.identifier_type, identity_map.identifier_value
        from {{ identity_map }} as identity_map
        inner join identities on identities.identity_id = identity_map.identity_id
        where identity_map.identifier_type in ('email', 'user_id', 'cookie')
        {%- else %}
        select identifier_type, identifier_value from given
        {%- endif %}
    {%- endset -%}
    {%- set forget_identifiers = link_attribution.create_scratch_table('forget_identifiers', identifiers_sql) -%}

    {#- Events: those carrying an identifier of the person (raw rows too, so rejected and unstaged rows go as well),
        and those the identity graph gave to the person's identities. -#}
    {%- set events = {} -%}
    {%- for kind, raw, key in [('click', raw_clicks, 'click_id'), ('conversion', raw_conversions, 'conversion_id')] %}
    {%- set events_sql -%}
        with raw_rows as (
            select
                {{ link_attribution.clean_identifier(key) }} as event_id,
                {{ link_attribution.clean_identifier('user_id') }} as user_id,
                {{ link_attribution.clean_identifier('cookie_id') }} as cookie_id,
                lower({{ link_attribution.clean_identifier('email') }}) as email
            from {{ raw }}
        ),
        raw_hashed as (
            select
                event_id,
                user_id,
                cookie_id,
                {{ link_attribution.hash_pii(link_attribution.normalize_email('email')) }} as email_hash
            from raw_rows
        )
        select event_id from raw_hashed
        where email_hash in (select identifier_value from {{ forget_identifiers }} where identifier_type = 'email')
            or user_id in (select identifier_value from {{ forget_identifiers }} where identifier_type = 'user_id')
            or cookie_id in (select identifier_value from {{ forget_identifiers }} where identifier_type = 'cookie')
        {%- if event_identities is not none and identity_map is not none %}
        union
        select event_identities.event_id
        from {{ event_identities }} as event_identities
        inner join {{ identity_map }} as identity_map on identity_map.identity_id = event_identities.identity_id
        inner join {{ forget_identifiers }} as forget_identifiers
            on forget_identifiers.identifier_type = identity_map.identifier_type
            and forget_identifiers.identifier_value = identity_map.identifier_value
        where event_identities.event_kind = '{{ kind }}'
        {%- endif %}
    {%- endset -%}
    {%- do events.update({kind: link_attribution.create_scratch_table('forget_' ~ kind ~ 's', events_sql)}) -%}
    {%- endfor %}

    {%- set counts = [] -%}
    {%- set identifiers = link_attribution.forget_count("select count(*) from " ~ forget_identifiers) -%}
    {%- set click_filter = "in (select event_id from " ~ events['click'] ~ ")" -%}
    {%- set conversion_filter = "in (select event_id from " ~ events['conversion'] ~ ")" -%}
    {%- set raw_click_match = link_attribution.clean_identifier('click_id') ~ " " ~ click_filter -%}
    {%- set raw_conversion_match = link_attribution.clean_identifier('conversion_id') ~ " " ~ conversion_filter -%}

    {#- Staging first, then raw, then the suppression list: one transaction on DuckDB and PostgreSQL, where the order
        does not matter; on Spark (no transactions) an erasure interrupted part-way finds the same rows when run
        again, because raw, which it finds them by, changes after the staged tables. Staging and int_clicks are
        erased too because the incremental models never re-read those rows (the other clicks' bot flags stay as
        they were decided, the person's clicks included). -#}
    {%- for name, clicks in [('intermediate.int_clicks', int_clicks), ('staging.stg_raw__clicks', staged['stg_raw__clicks'])] if clicks is not none %}
    {%- do counts.append((name, "deleted", link_attribution.forget_count("select count(*) from " ~ clicks ~ " where click_id " ~ click_filter))) -%}
    {%- do link_attribution.erase_rows(clicks, "click_id " ~ click_filter) -%}
    {%- endfor %}
    {%- if staged['stg_raw__conversions'] is not none %}
    {%- do counts.append(("staging.stg_raw__conversions", "anonymised", link_attribution.forget_count("select count(*) from " ~ staged['stg_raw__conversions'] ~ " where conversion_id " ~ conversion_filter))) -%}
    {%- set blanked = {} -%}
    {%- for column in ['user_id', 'email_hash', 'cookie_id', 'session_id', 'device_fingerprint', 'ip_hash', 'ip_network_hash', 'user_agent', 'direct_click_id'] -%}
        {%- do blanked.update({column: 'null'}) -%}
    {%- endfor -%}
    {%- do link_attribution.update_rows(staged['stg_raw__conversions'], blanked, "conversion_id " ~ conversion_filter) -%}
    {%- endif %}
    {%- for name in ['rejected_rows', 'rejected_values'] if staged[name] is not none %}
    {%- set match = "(source_table = 'clicks' and record_key " ~ click_filter ~ ") or (source_table = 'conversions' and record_key " ~ conversion_filter ~ ")" %}
    {%- do counts.append(("staging." ~ name, "deleted", link_attribution.forget_count("select count(*) from " ~ staged[name] ~ " where " ~ match))) -%}
    {%- do link_attribution.erase_rows(staged[name], match) -%}
    {%- endfor %}

    {#- Raw: clicks deleted, conversions anonymised (blanked: raw's columns are the delivered text). -#}
    {%- do counts.insert(0, ("raw.clicks", "deleted", link_attribution.forget_count("select count(*) from " ~ raw_clicks ~ " where " ~ raw_click_match))) -%}
    {%- do link_attribution.erase_rows(raw_clicks, raw_click_match) -%}
    {%- do counts.insert(1, ("raw.conversions", "anonymised", link_attribution.forget_count("select count(*) from " ~ raw_conversions ~ " where " ~ raw_conversion_match))) -%}
    {%- set emptied = {} -%}
    {%- for column in ['user_id', 'email', 'cookie_id', 'session_id', 'device_fingerprint', 'ip', 'user_agent', 'click_id'] -%}
        {%- do emptied.update({column: "''"}) -%}
    {%- endfor -%}
    {%- do link_attribution.update_rows(raw_conversions, emptied, raw_conversion_match) -%}

    {#- The suppression entries: keys derived from the hashes only, once per identifier. -#}
    {%- set suppressions = link_attribution.suppressions_relation() -%}
    {% call statement('forget_suppress') %}
        insert into {{ suppressions }} (identifier_type, identifier_hash, suppressed_at)
        select distinct identifier_type, identifier_hash, current_timestamp
        from (
            select
                identifier_type,
                case
                    when identifier_type = 'email' then {{ link_attribution.suppression_key('identifier_value') }}
                    else {{ link_attribution.suppression_key(link_attribution.hash_pii('identifier_value')) }}
                end as identifier_hash
            from {{ forget_identifiers }}
        ) as hashed
        where not exists (
            select 1 from {{ suppressions }} as existing
            where existing.identifier_type = hashed.identifier_type
                and existing.identifier_hash = hashed.identifier_hash
        )
    {% endcall %}
    {%- do link_attribution.drop_scratch_tables() -%}
    {%- do adapter.commit() -%}
    {%- do log("forget: identifiers suppressed (hash only): " ~ identifiers, info=True) -%}
    {%- for table, verb, n in counts -%}
        {%- do log("forget: " ~ table ~ ": " ~ n ~ " row(s) " ~ verb, info=True) -%}
    {%- endfor -%}
{% endmacro %}

{% macro forget_count(sql) -%}
    {{- return(run_query(sql).columns[0].values()[0] | int) -}}
{%- endmacro %}
