"""Conv-BN-ReLU blocks in torch: the twin of norm_keras.py (BatchNorm eps 1e-5, torch's default).

The conv biases differ on purpose: conv1 has none where Keras' c1 has one (its bias goes into
bn1's running mean), conv2 has one where c2 has none (it gets 0).
"""
import torch
from torch import nn


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(x, 1))


torch.manual_seed(0)
model = ConvBN().eval()


def example_input():
    return torch.zeros(1, 3, 8, 8)
