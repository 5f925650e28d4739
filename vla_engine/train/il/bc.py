"""Behaviour cloning: learn the expert's actions by supervised regression.

    loss = E_(o, a*) ~ D [ l(pi(o), a*) ]          (l = mse | l1 | smooth_l1, padded chunk steps masked)

Call shapes: ``BehavioralCloning(model, config).train(dataloader)`` and
``BehavioralCloning(model, dataset).train(num_epochs=100)``.
"""

from __future__ import annotations

from ...config.training_config import ILConfig
from ..supervised import SupervisedTrainer


class BehavioralCloning(SupervisedTrainer):
    config_class = ILConfig
