"""Inception-v3 (Szegedy et al. 2016, arXiv:1512.00567) up to its 2048-d pool3 features, the FID network.

Two sets of weights, two slightly different graphs, so FIDs computed with them are not comparable:

- ``variant="fid"``: the TensorFlow graph of 2015-12-05 that defined FID (Heusel et al. 2017), as pytorch-fid
  ports it (``pt_inception-2015-12-05-6726825d.pth``): TF's average pools leave the zero padding out of the
  mean (``count_include_pad=False``), and the last block (Mixed_7c) pools its branch with a 3x3 max pool
  where the paper's network averages - a quirk of that graph that FID values depend on. 1008 classes.
- ``variant="torchvision"``: torchvision's ImageNet classifier (``inception_v3_google-0cc3c7bd.pth``), the
  network of DAPS's FID table: padded zeros count in every average pool, average pooling throughout.

Both use TF's BatchNorm epsilon 0.001 and bias-free convolutions. Parameter names follow torchvision's
``Inception3`` (``Mixed_5b.branch1x1.conv.weight``), which both files use; the classifier (``fc``) and the
auxiliary head (``AuxLogits``) are not built, and their keys in the files are ignored. Each network expects
input in [-1, 1]: for the torchvision weights that is what torchvision feeds its network too, because its
``transform_input`` step (on with the pretrained weights) maps ImageNet-normalised input back to 2x - 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

from .networks import smallest_side

VARIANTS = ("fid", "torchvision")
#: keys the published files hold that the feature network does not use
UNUSED_KEYS = {"fid": ("fc.",), "torchvision": ("fc.", "AuxLogits.")}
FEATURES = 2048
#: the steps that shrink the grid, in order (every other layer keeps its size: 1x1 convolutions, padded 3x3, 1x7
#: and 7x1 ones, the stride-1 pools): Conv2d_1a (3x3/2), Conv2d_2a (3x3), the first max pool (3x3/2), Conv2d_4a
#: (3x3), the second max pool, then the reductions Mixed_6a and Mixed_7a (3x3/2 in each branch)
REDUCING_STEPS = ((3, 2, 0), (3, 1, 0), (3, 2, 0), (3, 1, 0), (3, 2, 0), (3, 2, 0), (3, 2, 0))
#: the smallest side the network takes without resizing (75: the 8x8 grid at 299 shrinks to 1x1)
MIN_SIDE = smallest_side(REDUCING_STEPS)


def _modules() -> dict[str, type]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
                     padding: int | tuple[int, int] = 0) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
            self.bn = nn.BatchNorm2d(c_out, eps=0.001)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.bn(self.conv(x)))

    def average(x: torch.Tensor, tf: bool) -> torch.Tensor:
        # TF averages over the pixels inside the image only; torchvision counts the zero padding too
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=not tf)

    class InceptionA(nn.Module):
        def __init__(self, c_in: int, pool_features: int, tf: bool) -> None:
            super().__init__()
            self.tf = tf
            self.branch1x1 = BasicConv2d(c_in, 64, 1)
            self.branch5x5_1 = BasicConv2d(c_in, 48, 1)
            self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
            self.branch_pool = BasicConv2d(c_in, pool_features, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(average(x, self.tf)),
            ], dim=1)

    class InceptionB(nn.Module):  # grid reduction 35 -> 17
        def __init__(self, c_in: int) -> None:
            super().__init__()
            self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ], dim=1)

    class InceptionC(nn.Module):  # factorised 7x7 convolutions
        def __init__(self, c_in: int, c7: int, tf: bool) -> None:
            super().__init__()
            self.tf = tf
            self.branch1x1 = BasicConv2d(c_in, 192, 1)
            self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
            self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(c_in, 192, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            double = x
            for step in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                         self.branch7x7dbl_5):
                double = step(double)
            return torch.cat([
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                double,
                self.branch_pool(average(x, self.tf)),
            ], dim=1)

    class InceptionD(nn.Module):  # grid reduction 17 -> 8
        def __init__(self, c_in: int) -> None:
            super().__init__()
            self.branch3x3_1 = BasicConv2d(c_in, 192, 1)
            self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven,
                              F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)

    class InceptionE(nn.Module):  # expanded filter bank at 8x8
        def __init__(self, c_in: int, pool: str) -> None:
            super().__init__()
            self.pool = pool  # "tf-avg", "avg" or "max" (the FID graph's last block)
            self.branch1x1 = BasicConv2d(c_in, 320, 1)
            self.branch3x3_1 = BasicConv2d(c_in, 384, 1)
            self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(c_in, 192, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            single = self.branch3x3_1(x)
            double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            if self.pool == "max":
                pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            else:
                pooled = average(x, self.pool == "tf-avg")
            return torch.cat([
                self.branch1x1(x),
                self.branch3x3_2a(single), self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ], dim=1)

    class InceptionFeatures(nn.Module):
        """Images in [-1, 1], (N, 3, H, W) with H, W >= MIN_SIDE (299 is what the weights were trained at) -> pool3
        features (N, 2048)."""

        def __init__(self, variant: str) -> None:
            super().__init__()
            if variant not in VARIANTS:
                raise ValueError(f"Inception variant must be one of {VARIANTS}, got {variant!r}")
            self.variant = variant
            tf = variant == "fid"
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
            self.Mixed_5b = InceptionA(192, 32, tf)
            self.Mixed_5c = InceptionA(256, 64, tf)
            self.Mixed_5d = InceptionA(288, 64, tf)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = InceptionC(768, 128, tf)
            self.Mixed_6c = InceptionC(768, 160, tf)
            self.Mixed_6d = InceptionC(768, 160, tf)
            self.Mixed_6e = InceptionC(768, 192, tf)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = InceptionE(1280, "tf-avg" if tf else "avg")
            self.Mixed_7c = InceptionE(2048, "max" if tf else "avg")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                          self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
                x = block(x)
            return x.mean(dim=(2, 3))  # global average pool: the 2048-d "pool3" features

    return {"InceptionFeatures": InceptionFeatures}


def inception_features(variant: str = "fid") -> nn.Module:
    """An untrained Inception-v3 feature network of ``variant`` ("fid" or "torchvision")."""
    return _modules()["InceptionFeatures"](variant)
