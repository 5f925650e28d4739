"""Imitation learning trainers."""

from .bc import BehavioralCloning

__all__ = ["BehavioralCloning"]
