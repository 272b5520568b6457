"""Asset keys shared by Python assets, checks and jobs: ``<schema>/<table>``, the same as the dbt translator's."""

import dagster as dg

# dbt models (keys produced by orchestration.dbt.LayerTranslator)
INT_CONVERSIONS = dg.AssetKey(["intermediate", "int_conversions"])
INT_CLICKS = dg.AssetKey(["intermediate", "int_clicks"])
INT_IDENTIFIERS = dg.AssetKey(["intermediate", "int_identifiers"])
INT_IDENTITY_EDGES = dg.AssetKey(["intermediate", "int_identity_edges"])
INT_IDENTITY_NODES = dg.AssetKey(["intermediate", "int_identity_nodes"])
INT_IDENTITY_KEY_COLLISIONS = dg.AssetKey(["intermediate", "int_identity_key_collisions"])
INT_IDENTITY_NODE_EDGES = dg.AssetKey(["intermediate", "int_identity_node_edges"])
INT_IDENTITY_INCREMENT_NODES = dg.AssetKey(["intermediate", "int_identity_increment_nodes"])
INT_IDENTITY_INCREMENT_EDGES = dg.AssetKey(["intermediate", "int_identity_increment_edges"])
INT_IDENTITIES = dg.AssetKey(["intermediate", "int_identities"])
INT_IDENTITY_MAP = dg.AssetKey(["intermediate", "int_identity_map"])
INT_EVENT_IDENTITIES = dg.AssetKey(["intermediate", "int_event_identities"])
INT_POPULARITY_MEMBERS = dg.AssetKey(["intermediate", "int_popularity_members"])
INT_POPULARITY_MEMBERS_NEW = dg.AssetKey(["intermediate", "int_popularity_members_new"])
INT_MATCH_CANDIDATES = dg.AssetKey(["intermediate", "int_match_candidates"])
INT_CHANNEL_FIT_WINDOW = dg.AssetKey(["intermediate", "int_channel_fit_window"])
INT_NON_CONVERTING_PATHS = dg.AssetKey(["intermediate", "int_non_converting_paths"])
DIM_IDENTITIES = dg.AssetKey(["marts", "dim_identities"])

# Python outputs (declared as dbt sources with meta.dagster.asset_key, so marts connect to them)
IDENTITY_REPRESENTATIVES = dg.AssetKey(["intermediate", "identity_representatives"])
IDENTITY_ADDED_NODES = dg.AssetKey(["intermediate", "identity_added_nodes"])
IDENTITY_FORWARDS = dg.AssetKey(["intermediate", "identity_forwards"])
MATCH_MODEL = dg.AssetKey(["intermediate", "match_model"])
SIGNAL_WEIGHTS = dg.AssetKey(["intermediate", "signal_weights"])
MATCH_SCORES = dg.AssetKey(["intermediate", "match_scores"])
CHANNEL_WEIGHTS = dg.AssetKey(["intermediate", "channel_weights"])
ATTRIBUTION_CREDITS = dg.AssetKey(["intermediate", "attribution_credits"])
CONVERSION_ATTRIBUTION = dg.AssetKey(["intermediate", "conversion_attribution"])

# Raw tables (written by the loader, observed by Dagster)
RAW_TABLES = {name: dg.AssetKey(["raw", name]) for name in ("links", "clicks", "conversions", "fx_rates", "spend")}

# The marts as BI reads them: a snapshot published at the end of every run (dbt_project/macros/publish.sql)
PUBLISHED_MARTS = dg.AssetKey(["published", "marts"])
