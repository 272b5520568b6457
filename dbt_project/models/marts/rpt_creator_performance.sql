{#- One row per creator, UTC day and attribution model: clicks on the creator's links, conversions and revenue
    (reporting currency) credited to them, and the revenue of their touched conversions that stays unattributed.
    The shape every report shares (macro marts_daily_report). -#}

{{ marts_daily_report('creator_id') }}
