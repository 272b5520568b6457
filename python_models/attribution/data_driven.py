"""The data-driven fit: Markov and Shapley weights per grain value from one set of paths."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from python_models.attribution.config import DEFAULT_CONFIG, AttributionConfig
from python_models.attribution.markov import fit_markov, markov_transitions
from python_models.attribution.shapley import fit_shapley

# --------------------------------------------------------------------------------------------------------
# Fitting the data-driven weights
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataDrivenFit:
    """Fitted Markov and Shapley models at one grain, for reports and for :func:`attribute`."""

    grain: str
    transitions: pd.DataFrame
    markov: pd.DataFrame
    shapley: pd.DataFrame

    @property
    def channel_weights(self) -> pd.DataFrame:
        """(model, grain, grain_value, weight, allocation_weight): the ``channel_weights`` argument of
        :func:`attribute`. weight is the model's share of the fitted conversions; allocation_weight is how a
        conversion is split over its distinct grain values so that the credits add up to those shares."""
        parts = [
            pd.DataFrame(
                {
                    "model": model,
                    "grain": self.grain,
                    "grain_value": fitted["channel"].astype("str"),
                    "weight": fitted["weight"].astype("float64"),
                    "allocation_weight": fitted["allocation_weight"].astype("float64"),
                }
            )
            for model, fitted in (("markov", self.markov), ("shapley", self.shapley))
        ]
        return pd.concat(parts, ignore_index=True).astype(
            {"model": "str", "grain": "str", "grain_value": "str", "weight": "float64", "allocation_weight": "float64"}
        )


def fit_data_driven(paths: pd.DataFrame, config: AttributionConfig = DEFAULT_CONFIG) -> DataDrivenFit:
    """Fit Markov (converting and non-converting paths) and Shapley (converting paths) at ``config.grain``."""
    return DataDrivenFit(
        grain=config.grain,
        transitions=markov_transitions(paths),
        markov=fit_markov(paths),
        shapley=fit_shapley(paths, config.shapley_max_channels),
    )
