"""Identity graph: strong identifiers linked by co-occurrence, resolved into stable identities.

Nodes are strong identifiers only (``user_id``, ``email``, ``cookie``, ``session``); IP addresses and
fingerprints are shared by strangers (carrier NAT, identical phones), so they never merge identities.
Identities are the connected components of the strong edges, except that a component which breaks an
:class:`IdentityLimits` bound (two user_ids, a kiosk cookie with 500 sessions...) is rebuilt by a constrained
maximum spanning forest: its edges are added strongest first (most events, most trusted edge type, oldest) and
an edge is dropped when the union would break a limit. On a path between two user_ids this cuts the weakest edge
of the strongest path, so the offending component is split, never merged wholesale. Only violating components
take this per-edge route (sessions hanging off a single cookie are attached afterwards, vectorised); everything
else is one ``scipy.sparse.csgraph.connected_components`` call, which such leaf sessions skip too.

Two entry points share that logic: :func:`resolve_identities` takes identifier strings and encodes them once
with Arrow's dictionary encoding; :func:`resolve_identity_nodes` takes a graph the warehouse has already
encoded as integer node ids (the pipeline's path, since the engine groups and joins strings far faster).
Identity ids are ``'idn_' + sha256('<type>:<value>')[:16]`` of the component's earliest identifier (minimum
``first_seen_at``, ties by type priority then value), so they survive reruns, input reordering and growth that
does not merge components. An event takes the identity of its highest-priority strong identifier (see
``STRONG_TYPES``); events without one get ``'evt_' + sha256('<kind>:<id>')[:16]`` (:func:`event_singleton_id`).

Between re-fits, :func:`merge_identities` unites the stored identities with the identifiers and edges of newly
loaded events (the hourly job), under the same limits and naming rule, never cutting a stored identity.

Modules: ``rules`` (types, limits, trust), ``encoding`` (vectorised helpers), ``graph`` (the array graph from strings
or integer codes), ``split`` (limit splits), ``resolve`` (the entry points), ``merge`` (the hourly merge). No I/O
and no environment reads: the orchestration layer builds :class:`IdentityLimits` from its settings.
"""

from python_models.identity.encoding import event_singleton_id, identity_id_for
from python_models.identity.graph import CODED_EDGE_COLUMNS, NODE_COLUMNS, ValueLookup
from python_models.identity.merge import UNIT_COLUMNS, UNIT_COUNT_COLUMNS, UNIT_EDGE_COLUMNS, merge_identities
from python_models.identity.resolve import (
    _components,
    resolve_identities,
    resolve_identities_with_stats,
    resolve_identity_nodes,
)
from python_models.identity.rules import (
    DEFAULT_BLOCKED_VALUES,
    DEFAULT_EDGE_TYPE_TRUST,
    JUNK_TOKENS,
    STRONG_TYPES,
    WEAK_TYPES,
    IdentityLimits,
    trust_by_edge_type,
)

__all__ = [
    "CODED_EDGE_COLUMNS",
    "DEFAULT_BLOCKED_VALUES",
    "DEFAULT_EDGE_TYPE_TRUST",
    "JUNK_TOKENS",
    "NODE_COLUMNS",
    "STRONG_TYPES",
    "UNIT_COLUMNS",
    "UNIT_COUNT_COLUMNS",
    "UNIT_EDGE_COLUMNS",
    "WEAK_TYPES",
    "IdentityLimits",
    "ValueLookup",
    "_components",
    "event_singleton_id",
    "identity_id_for",
    "merge_identities",
    "resolve_identities",
    "resolve_identities_with_stats",
    "resolve_identity_nodes",
    "trust_by_edge_type",
]
