"""A feature-extraction target for fixtures/examples/small_vgg_keras.h5: the same trunk with a
BatchNorm after each conv (new), and a new 10-class head."""
import torch
from torch import nn


def _block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallVGGBN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(*_block(3, 8), *_block(8, 8), nn.MaxPool2d(2),
                                      *_block(8, 16), *_block(16, 16), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 32),
                                        nn.ReLU(inplace=True), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


torch.manual_seed(0)
model = SmallVGGBN()


def example_input():
    return torch.zeros(1, 3, 16, 16)
