-- Every bot click says why, and no human click carries a reason.
select click_id, is_bot, bot_reason
from {{ ref('int_clicks') }}
where (is_bot and bot_reason is null)
    or (not is_bot and bot_reason is not null)
