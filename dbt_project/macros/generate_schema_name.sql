{#- BI tools and people query the schemas raw / staging / intermediate / marts by name on every target,
    so a folder's custom schema is used verbatim instead of dbt's "<target schema>_<custom>" default. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
