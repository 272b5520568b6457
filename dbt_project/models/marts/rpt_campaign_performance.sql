{#- One row per campaign: links, creators, clicks, conversions and revenue credited under every attribution model
    (wide), average match confidence and the revenue of the campaign's conversions that stays unattributed. -#}

{{ marts_performance_report('campaign_id') }}
