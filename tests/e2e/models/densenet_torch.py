"""The torch twin of densenet_keras.py, written as torchvision writes DenseNet (norm-relu-conv
layers whose output is concatenated after their input, transitions, a final norm, pooling and
a classifier)."""
import torch
from torch import nn

GROWTH = 8


class DenseLayer(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * GROWTH, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * GROWTH)
        self.conv2 = nn.Conv2d(4 * GROWTH, GROWTH, 3, padding=1, bias=False)

    def forward(self, x):
        new = self.conv1(torch.relu(self.norm1(x)))
        new = self.conv2(torch.relu(self.norm2(new)))
        return torch.cat([x, new], 1)


class Transition(nn.Sequential):
    def __init__(self, cin):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, cin // 2, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.norm0 = nn.BatchNorm2d(16)
        self.block1 = nn.Sequential(DenseLayer(16), DenseLayer(16 + GROWTH))
        self.transition1 = Transition(16 + 2 * GROWTH)
        self.block2 = nn.Sequential(DenseLayer(16), DenseLayer(16 + GROWTH))
        self.norm5 = nn.BatchNorm2d(16 + 2 * GROWTH)
        self.classifier = nn.Linear(16 + 2 * GROWTH, classes)

    def forward(self, x):
        x = torch.relu(self.norm0(self.conv0(x)))
        x = self.block2(self.transition1(self.block1(x)))
        x = torch.relu(self.norm5(x))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


torch.manual_seed(0)
model = DenseNet().eval()


def example_input():
    return torch.zeros(1, 3, 16, 16)
