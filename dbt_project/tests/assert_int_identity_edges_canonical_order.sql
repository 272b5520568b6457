-- Edges are stored once per unordered pair: left < right by (type, value), compared byte by byte.
select *
from {{ ref('int_identity_edges') }}
where not (
    {{ int_bytewise_less('left_type', 'right_type') }}
    or (left_type = right_type and {{ int_bytewise_less('left_value', 'right_value') }})
)
