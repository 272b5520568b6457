{#- One row per channel, UTC day and attribution model, plus an '(unattributed)' channel carrying the share no
    touch earns, so one model's rows add up to every conversion and all revenue (reporting currency). The shape
    every report shares (macro marts_daily_report). -#}

{{ marts_daily_report('channel') }}
