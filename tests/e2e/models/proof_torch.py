"""A small torch CNN, the twin of the Keras network ``proof_keras.build``: three 3x3 convs of
which two have the same shape (a plan can swap them), a BatchNorm (its epsilon differs from
Keras' 1e-3), a flatten before the classifier (its permutation matters)."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        x = nn.functional.max_pool2d(torch.relu(self.bn(x)), 2)
        return self.fc(torch.flatten(x, 1))


torch.manual_seed(0)
model = Net().eval()
new_head = Net(classes=10).eval()


def example_input():
    return torch.zeros(1, 3, 8, 8)
# the same network built with Keras' BatchNorm epsilon: its state dict does not say so
keras_eps = Net().eval()
keras_eps.bn.eps = 1e-3
