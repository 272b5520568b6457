{#- The match-confidence model in readable form: per matching signal, the fixed prior confidence of the old
    rule, the weight learned from labelled pairs and the evidence behind it. -#}

with

signal_weights as (

    select * from {{ source('python', 'signal_weights') }}

),

final as (

    select
        cast(signal as text) as signal,
        cast(prior_confidence as double precision) as prior_confidence,
        cast(learned_weight as double precision) as learned_weight,
        cast(match_weight_log2 as double precision) as match_weight_log2,
        cast(n_labelled_pairs as bigint) as n_labelled_pairs,
        cast(n_positive as bigint) as n_positive,
        cast(n_negative as bigint) as n_negative,
        cast(source as text) as source
    from signal_weights

)

select * from final
