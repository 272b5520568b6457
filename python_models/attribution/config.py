"""The attribution models, grains, column contracts and the configuration every step reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

RULE_MODELS: tuple[str, ...] = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
DATA_DRIVEN_MODELS: tuple[str, ...] = ("markov", "shapley")
BASELINE_MODEL = "rule_based"
MODELS: tuple[str, ...] = (*RULE_MODELS, *DATA_DRIVEN_MODELS, BASELINE_MODEL)
GRAINS: tuple[str, ...] = ("channel", "link_id", "campaign_id", "creator_id")

# Markov chain states that are not grain values.
START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"
# Grain value used when a touch has none (e.g. a click on a link unknown to `links`).
UNKNOWN_GRAIN = "(unknown)"

TOUCH_COLUMNS: tuple[str, ...] = (
    "conversion_id",
    "click_id",
    "link_id",
    "converted_at",
    "clicked_at",
    "click_identity_id",
    "match_probability",
)
OUTPUT_COLUMNS: tuple[str, ...] = (
    "conversion_id",
    "model",
    "click_id",
    "link_id",
    "touch_position",
    "n_touches",
    "match_probability",
    "decay_weight",
    "credit_share",
    "credit_revenue",
    "is_unattributed",
)
PATH_COLUMNS: tuple[str, ...] = ("path", "conversions", "nulls")
WEIGHT_COLUMNS: tuple[str, ...] = ("model", "grain", "grain_value", "weight", "allocation_weight")

# Shares below this are floating-point noise (e.g. 1 - sum of shares that should be exactly 1).
_SHARE_EPSILON = 1e-12
# Separator used to build hashable path keys with vectorised string concatenation; a path key is every step
# followed by it (an engine that aggregates paths itself builds the same keys: see null_paths_from_keys).
PATH_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class AttributionConfig:
    """Parameters of touch selection and of every model.

    ``grain`` is the level the data-driven models (markov, shapley) are fitted at. ``shapley_max_channels``
    is the largest number of grain values for which Shapley values are computed by enumerating all
    coalitions; above it the exact closed form is used (see :func:`fit_shapley`).
    """

    lookback_days: float = 30.0
    probability_floor: float = 0.05
    repeat_seconds: float = 5.0
    half_life_days: float = 7.0
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)
    grain: str = "channel"
    shapley_max_channels: int = 15
    models: tuple[str, ...] = MODELS

    def __post_init__(self) -> None:
        if not self.lookback_days > 0:
            raise ValueError(f"AttributionConfig.lookback_days must be > 0, got {self.lookback_days!r}")
        if not 0.0 <= self.probability_floor <= 1.0:
            raise ValueError(f"AttributionConfig.probability_floor must be in [0, 1], got {self.probability_floor!r}")
        if not self.repeat_seconds >= 0:
            raise ValueError(f"AttributionConfig.repeat_seconds must be >= 0, got {self.repeat_seconds!r}")
        if not self.half_life_days > 0:
            raise ValueError(f"AttributionConfig.half_life_days must be > 0, got {self.half_life_days!r}")
        weights = tuple(self.position_weights)
        if len(weights) != 3 or min(weights) < 0 or not math.isclose(sum(weights), 1.0):
            raise ValueError(
                "AttributionConfig.position_weights must be three non-negative numbers (first, middle, last) "
                f"summing to 1, got {self.position_weights!r}"
            )
        if self.grain not in GRAINS:
            raise ValueError(f"AttributionConfig.grain must be one of {GRAINS}, got {self.grain!r}")
        if self.shapley_max_channels < 1:
            raise ValueError(f"AttributionConfig.shapley_max_channels must be >= 1, got {self.shapley_max_channels!r}")
        unknown = [model for model in self.models if model not in MODELS]
        if unknown or len(set(self.models)) != len(self.models):
            raise ValueError(f"AttributionConfig.models must be distinct names from {MODELS}, got {self.models!r}")


DEFAULT_CONFIG = AttributionConfig()
