{#- One row per campaign, UTC day and attribution model: clicks on the campaign's links, conversions and revenue
    (reporting currency) credited to them, and the revenue of their touched conversions that stays unattributed.
    The shape every report shares (macro marts_daily_report). -#}

{{ marts_daily_report('campaign_id') }}
