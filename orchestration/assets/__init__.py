"""Python assets by domain; each reads from the warehouse, calls python_models, writes back, adds metadata."""

PYTHON_ASSETS: list = []
