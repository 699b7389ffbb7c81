"""A small torch CNN whose flatten meets a 4x4x8 feature map (the permutation matters)."""
import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(6, 8, 3)
        self.fc = nn.Linear(8 * 4 * 4, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv_a(x)), 2)
        x = torch.relu(self.conv_b(x))
        return self.out(torch.relu(self.fc(torch.flatten(x, 1))))


def model():
    torch.manual_seed(5)
    m = SmallCNN().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)     # non-trivial biases too
    return m
