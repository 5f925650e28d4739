"""Imitation learning trainers: ``BehavioralCloning``, ``DAgger``, ``GAIL``, ``OfflineBC`` (Minari data).

Light on import (the methods registry looks these modules up without loading torch); each trainer
loads with its module on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {"BehavioralCloning": ".bc", "DAgger": ".dagger", "GAIL": ".gail", "OfflineBC": ".offline_bc"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
