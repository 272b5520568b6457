"""The lab: generated worlds with ground truth, the evaluator that scores a warehouse against them, and the
benchmark. Tests and the command line import it; production code (orchestration, python_models) never does."""
