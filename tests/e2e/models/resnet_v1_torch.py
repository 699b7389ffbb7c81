"""The torch twin of resnet_v1_keras.py, written as torchvision writes ResNet but with the
stride on the first 1x1 conv (ResNet v1, as Keras has it): convs without bias, BatchNorm after
each, the shortcut (``downsample``, in each stage's first block) registered and run after the
main branch. As in ResNet50's first stage, that shortcut conv has the shape of the main
branch's last conv (8 -> 32 channels, 1x1)."""
import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride=1, shortcut=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.downsample = None
        if shortcut:
            self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Bottleneck(8, 8, 1, True), Bottleneck(32, 8))
        self.layer2 = nn.Sequential(Bottleneck(32, 16, 2, True), Bottleneck(64, 16))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


torch.manual_seed(0)
model = ResNet().eval()


def example_input():
    return torch.zeros(1, 3, 32, 32)
