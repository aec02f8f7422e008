"""Reference learners for the class-incremental comparison (benchmarks/kvb and tests).

:class:`LinearHead` is a linear classifier trained by minibatch SGD on fixed features; trained
task after task on the same 10 outputs it is the "naive fine-tuning" baseline that forgets. Fed
the concatenated selected keys of a bottleneck it is the "frozen VQ keys + learned linear
decoder" baseline; fed the union of all tasks it is the i.i.d. reference.

Its initial weights come from a local generator seeded with ``seed`` (the same draws torch's
default ``nn.Linear`` initialisation makes after ``torch.manual_seed(seed)``), so the global RNG is
never touched.
"""
from __future__ import annotations

import math

import torch

from ...errors import UsageError


class LinearHead:
    """Linear softmax classifier on features standardised with statistics of unlabelled data."""

    def __init__(self, num_classes: int = 10, *, lr: float = 0.05, momentum: float = 0.9, seed: int = 0) -> None:
        self.num_classes, self.lr, self.momentum, self.seed = num_classes, lr, momentum, seed
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.layer: torch.nn.Linear | None = None
        self.tasks_seen = 0

    def init(self, unlabelled_features: torch.Tensor) -> "LinearHead":
        z = unlabelled_features.float()
        self.mean, self.std = z.mean(0), z.std(0).clamp_min(1e-6)
        self.layer = _linear(z.shape[1], self.num_classes, torch.Generator().manual_seed(self.seed)).to(z.device)
        return self

    def _norm(self, z: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            raise UsageError("call init(features) first")
        return (z.float() - self.mean) / self.std

    def partial_fit(
        self, z: torch.Tensor, y: torch.Tensor, *, epochs: int = 500, batch_size: int = 256
    ) -> "LinearHead":
        """SGD with momentum (a fresh optimiser per task, as in naive fine-tuning)."""
        zn, y = self._norm(z), y.to(z.device).long()
        opt = torch.optim.SGD(self.layer.parameters(), lr=self.lr, momentum=self.momentum)
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.tasks_seen + 1)
        n = zn.shape[0]
        with torch.enable_grad():
            for _ in range(epochs):
                perm = torch.randperm(n, generator=gen).to(z.device)
                for s in range(0, n, batch_size):
                    bi = perm[s : s + batch_size]
                    loss = torch.nn.functional.cross_entropy(self.layer(zn[bi]), y[bi])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        self.tasks_seen += 1
        return self

    @torch.no_grad()
    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(self._norm(z)).argmax(1)


def _linear(fan_in: int, out: int, gen: torch.Generator) -> torch.nn.Linear:
    """``nn.Linear(fan_in, out)`` with torch's default initialisation, drawn from ``gen``."""
    layer = torch.nn.utils.skip_init(torch.nn.Linear, fan_in, out)  # allocates without drawing
    torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    torch.nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return layer
