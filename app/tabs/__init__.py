"""One module per tab; each has ``build(ctx, demo)`` that lays out the tab and wires its events."""

from . import benchmark, datasets, model_builder, rollouts, training

# the order of the Quick Start path: data -> (model) -> train -> watch -> compare
TABS = (datasets, model_builder, training, rollouts, benchmark)

__all__ = ["TABS", "benchmark", "datasets", "model_builder", "rollouts", "training"]
