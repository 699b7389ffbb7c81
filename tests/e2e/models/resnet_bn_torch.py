"""A small ResNet-style torch model for the ONNX fusion tests: BasicBlocks of Conv(bias=False) +
BatchNorm, one downsample (1x1 conv + BN), global average pooling, a linear head. The blocks run
their downsample after the main path, as torchvision's do, so execution order is module order.
``biased``: the same with conv biases before each BatchNorm (as a Keras-style ResNet50 has)."""
import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, bias=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class SmallResNet(nn.Module):
    def __init__(self, classes=5, bias=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, bias=bias), BasicBlock(8, 8, bias=bias))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2, bias=bias),
                                    BasicBlock(16, 16, bias=bias))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


torch.manual_seed(0)
model = SmallResNet().eval()
biased = SmallResNet(bias=True).eval()


def example_input():
    return torch.zeros(1, 3, 8, 8)
