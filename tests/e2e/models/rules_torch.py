"""Two spellings of one small network that only rules can pair: names no vocabulary knows, a
layer the readers classify differently on each side.

``Separate``: three projections ``alpha``, ``beta``, ``gamma`` (E -> E) whose outputs are
concatenated, a LayerNorm without bias over the 3E features, a linear ``head``.
``Fused``: one projection ``mix`` (E -> 3E), a custom ``Gain`` module (opaque to weightmap)
computing the same LayerNorm with its own weight, and a ``head`` that is a 1x1 ``Conv1d``.
"""
import torch
from torch import nn

IN, E, OUT = 4, 6, 2


class Separate(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(IN, E)
        self.alpha = nn.Linear(E, E)
        self.beta = nn.Linear(E, E)
        self.gamma = nn.Linear(E, E)
        self.norm = nn.LayerNorm(3 * E, bias=False)
        self.head = nn.Linear(3 * E, OUT)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        z = torch.cat([self.alpha(h), self.beta(h), self.gamma(h)], dim=-1)
        return self.head(self.norm(z))


class Gain(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, z):
        return nn.functional.layer_norm(z, z.shape[-1:], weight=self.weight)


class Fused(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(IN, E)
        self.mix = nn.Linear(E, 3 * E)
        self.gain = Gain(3 * E)
        self.head = nn.Conv1d(3 * E, OUT, 1)

    def forward(self, x):
        z = self.gain(self.mix(torch.tanh(self.inp(x))))
        return self.head(z.unsqueeze(-1)).squeeze(-1)
