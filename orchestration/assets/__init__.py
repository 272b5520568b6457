"""Python assets by domain; each reads from the warehouse, calls python_models, writes back, adds metadata."""

from orchestration.assets.attribution import attribution, channel_weights
from orchestration.assets.confidence import match_model, match_scores
from orchestration.assets.identity import identity_graph
from orchestration.assets.raw import RAW_ASSETS, build_raw_checks

PYTHON_ASSETS = [identity_graph, match_model, match_scores, channel_weights, attribution]
EXTERNAL_ASSETS = RAW_ASSETS

__all__ = ["EXTERNAL_ASSETS", "PYTHON_ASSETS", "build_raw_checks"]
