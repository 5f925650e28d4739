"""ACT-style temporal ensembling (Zhao et al. 2023): predict a chunk at every step and act with a
weighted average of every prediction made so far for the current step.

Weights are ``exp(-coeff * i)`` with ``i = 0`` for the oldest prediction, as in ACT (coeff 0.01):
older predictions weigh slightly more, which smooths the motion. A negative coefficient weighs the
newer predictions more (coeff -1: the newest about 63%, the one before 23%, ...), a receding-horizon
controller that still averages out what each single frame gets wrong. ``update(chunk)`` takes the new
(B, chunk, A) prediction and returns the action (B, A) for this step.
"""

from __future__ import annotations

import torch


class TemporalEnsembler:
    def __init__(self, coeff: float, chunk_size: int):
        self.coeff, self.chunk_size = float(coeff), int(chunk_size)
        self.weights = torch.exp(-self.coeff * torch.arange(self.chunk_size, dtype=torch.float32))  # (C,)
        self.reset()

    def reset(self) -> None:
        self._sum: torch.Tensor | None = None  # (B, C', A): weighted sums of predictions for steps t..t+C'-1
        self._wsum: torch.Tensor | None = None  # (C',): the weights summed into each step
        self._count: torch.Tensor | None = None  # (C',): predictions made for each step so far

    def update(self, chunk: torch.Tensor) -> torch.Tensor:
        """Fold in the chunk predicted at this step (B, C, A); return this step's action (B, A)."""
        b, c, a = chunk.shape
        if c != self.chunk_size:
            raise ValueError(f"temporal ensembling was set up for chunks of {self.chunk_size}, got {c}")
        chunk = chunk.float()
        if self._sum is None or self._sum.shape[0] != b:
            # the oldest prediction of a step has index 0: its weight is weights[count]
            self._sum = torch.zeros(b, 0, a, device=chunk.device)
            self._wsum = torch.zeros(0, device=chunk.device)
            self._count = torch.zeros(0, dtype=torch.long, device=chunk.device)
        n_old = self._sum.shape[1]
        grow = c - n_old
        if grow > 0:
            self._sum = torch.cat([self._sum, torch.zeros(b, grow, a, device=chunk.device)], dim=1)  # (B, C, A)
            self._wsum = torch.cat([self._wsum, torch.zeros(grow, device=chunk.device)])  # (C,)
            self._count = torch.cat([self._count, torch.zeros(grow, dtype=torch.long, device=chunk.device)])
        w = self.weights.to(chunk.device)[self._count.clamp_max(self.chunk_size - 1)]  # (C,)
        self._sum = self._sum + chunk * w[None, :, None]  # (B, C, A)
        self._wsum = self._wsum + w
        self._count = self._count + 1
        action = self._sum[:, 0] / self._wsum[0]  # (B, A)
        self._sum, self._wsum, self._count = self._sum[:, 1:], self._wsum[1:], self._count[1:]  # next step first
        return action
