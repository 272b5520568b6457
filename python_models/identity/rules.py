"""The rules of the identity graph: strong and weak identifier types, their priority, per-identity limits, blocked
values and edge-type trust. The SQL models around the graph (dbt vars identity_blocked_defaults,
identity_edge_type_trust) hold the same values; a test keeps them equal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

# Priority order: when a limit split puts an event's identifiers in different identities, the event follows
# the first type present in this order.
STRONG_TYPES: tuple[str, ...] = ("user_id", "email", "cookie", "session")
WEAK_TYPES: tuple[str, ...] = ("fingerprint", "ip")

# How much an edge type is trusted when a component must be split (higher = kept longer). A session id lives
# inside one browser; a login ties an email to its account; a forwarded campaign email or a shared link can
# carry someone else's email / click id to a stranger's browser.
DEFAULT_EDGE_TYPE_TRUST: Mapping[str, int] = {
    "cookie-session": 5,
    "email-user_id": 4,
    "cookie-user_id": 3,
    "session-user_id": 3,
    "direct_click-cookie": 2,
    "cookie-email": 1,
    "email-session": 1,
}


# Placeholder tokens broken trackers write into identifier fields; staging should null them, this is the backstop
# (a shared 'undefined' cookie would otherwise merge thousands of people). Emails arrive hashed, so they are
# listed by the operator as hashes when needed.
JUNK_TOKENS: tuple[str, ...] = ("null", "undefined", "none", "nan", "0", "-1", "00000000-0000-0000-0000-000000000000")
DEFAULT_BLOCKED_VALUES: frozenset[tuple[str, str]] = frozenset(
    (t, v) for t in ("user_id", "cookie", "session") for v in JUNK_TOKENS
)


@dataclass(frozen=True)
class IdentityLimits:
    """Upper bounds on what one person can plausibly own; components beyond them are split.

    ``blocked_values`` are (identifier_type, identifier_value) pairs that never link anything and are left out of
    the identity map. ``edge_type_trust`` ranks edge types for splitting (higher = cut later).
    """

    max_user_ids: int = 1
    max_emails: int = 5
    max_cookies: int = 200
    max_sessions: int = 2000
    blocked_values: frozenset[tuple[str, str]] = DEFAULT_BLOCKED_VALUES
    edge_type_trust: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_EDGE_TYPE_TRUST))

    def __post_init__(self) -> None:
        for name in ("max_user_ids", "max_emails", "max_cookies", "max_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"IdentityLimits.{name} must be >= 1, got {getattr(self, name)!r}")
        bad = sorted({t for t, _ in self.blocked_values} - set(STRONG_TYPES) - set(WEAK_TYPES))
        if bad:
            raise ValueError(f"IdentityLimits.blocked_values has unknown identifier types {bad}")

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly view for asset metadata."""
        return {
            "max_user_ids": self.max_user_ids,
            "max_emails": self.max_emails,
            "max_cookies": self.max_cookies,
            "max_sessions": self.max_sessions,
            "blocked_values": sorted(f"{t}:{v}" for t, v in self.blocked_values),
            "edge_type_trust": dict(self.edge_type_trust),
        }

    def as_array(self) -> np.ndarray:
        """Limits in ``STRONG_TYPES`` order."""
        return np.array([self.max_user_ids, self.max_emails, self.max_cookies, self.max_sessions])


def trust_by_edge_type(trust: Mapping[str, int]) -> dict[str, int]:
    """``trust`` with both spellings of every edge type: 'a-b' and 'b-a' are the same edge."""
    full = dict(trust)
    for key, value in trust.items():
        left, _, right = key.partition("-")
        full.setdefault(f"{right}-{left}", value)
    return full
