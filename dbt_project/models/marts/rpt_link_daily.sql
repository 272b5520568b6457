{#- One row per link, UTC day and attribution model: clicks on the link that day (human / bot, distinct people)
    and the conversions and revenue (reporting currency) credited to the link on that conversion day under the
    model. The shape every report shares (macro marts_daily_report). -#}

{{ marts_daily_report('link_id') }}
