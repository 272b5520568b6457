-- Every candidate click lies inside its conversion's matching window. The test reads int_match_candidates only, so
-- it runs with that (partitioned) model and never before it exists.
select conversion_id, click_id, clicked_at, converted_at
from {{ ref('int_match_candidates') }}
where not ({{ int_within_lookback('clicked_at', 'converted_at') }})
