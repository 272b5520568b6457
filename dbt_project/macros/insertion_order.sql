{#- DuckDB keeps a table's rows in the order its query produced them unless told otherwise, and to do so a large
    CREATE TABLE AS buffers rows it could otherwise stream: at 10M clicks int_identity_edges ran out of its memory
    limit that way. Models whose rows have no meaningful order (a GROUP BY's output has none anyway) turn the
    guarantee off for their own statement and back on afterwards. Nothing to do on PostgreSQL. -#}
{% macro preserve_insertion_order(enabled) -%}
    {{- return(adapter.dispatch('preserve_insertion_order', 'link_attribution')(enabled)) -}}
{%- endmacro %}

{% macro default__preserve_insertion_order(enabled) -%}{%- endmacro %}

{% macro duckdb__preserve_insertion_order(enabled) -%}
    set preserve_insertion_order = {{ 'true' if enabled else 'false' }}
{%- endmacro %}
