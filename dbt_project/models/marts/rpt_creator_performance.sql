{#- One row per creator: links, clicks, conversions and revenue credited under every attribution model (wide),
    average match confidence and the revenue of the creator's conversions that stays unattributed. -#}

{{ marts_performance_report('creator_id') }}
