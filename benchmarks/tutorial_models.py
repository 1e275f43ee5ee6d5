"""The benchmark models as a PyTorch tutorial would write them: nn.Modules in NCHW.

reference_cnn is the frozen yardstick of baseline_tutorial_loop.py; resnet_small
and vgg_small follow the shipped examples of the same names (same layers, TF's
BN constants) written the plain way: default layout, no fusion, no compile.
Do not tune this file: like baseline_tutorial_loop.py, it is a yardstick.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from baseline_tutorial_loop import reference_cnn


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        # TF's SAME padding for a stride-2 3x3 on an even input pads one cell at the end only
        self.pad = (0, 1, 0, 1) if stride == 2 else None
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=0 if self.pad else 1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = _bn(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 else None

    def forward(self, x):
        h = F.pad(x, self.pad) if self.pad else x
        h = F.relu(self.bn1(self.conv1(h)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (self.shortcut(x) if self.shortcut is not None else x))


def resnet_small() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        _bn(16),
        nn.ReLU(),
        _Block(16, 16, 1),
        _Block(16, 32, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def vgg_small() -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for width in (16, 32, 64):
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        cin = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))


MODELS = {"reference_cnn": reference_cnn, "resnet_small": resnet_small, "vgg_small": vgg_small}
