-- A candidate pair shares at least one signal: blocking never produces a pair from the time window alone.
select conversion_id, click_id
from {{ ref('int_match_candidates') }}
where not (
    sig_direct_click or sig_user_id or sig_session or sig_cookie or sig_fingerprint or sig_email
    or sig_ip_ua or sig_ip or sig_identity
)
