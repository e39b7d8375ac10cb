"""Image nets: a small ResNet-style slice classifier (optionally fused with tabular features) and a 2-D U-Net.

Constructors hold only the architecture, as in ``precimed.models.nets``. Training lives in
``precimed.train.imaging``. Both nets expose named parameter groups (:func:`layer_groups`) so that a
pretrained net can be fine-tuned with some groups frozen or trained at a smaller learning rate.

``SmallResNet`` is a compact ResNet (He et al., 2016): a 3×3 stem, stages of basic blocks (two 3×3
convolutions with batch norm and an identity or 1×1 projection skip), stride 2 between stages, global
average pooling, dropout and a linear head. With ``n_tabular > 0`` it is the image + tabular fusion net:
the image embedding is joined with a small MLP embedding of the tabular features before the head.
The U-Net is MONAI's (Ronneberger et al., 2015, with residual units), checked for input sizes its
down-sampling can handle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet
from torch import Tensor, nn

from precimed.errors import ConfigError, DataError

__all__ = ["BasicBlock", "SmallResNet", "UNet2D", "layer_groups", "unet"]


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus the skip (identity, or 1×1 conv + BN when the shape changes), ReLU."""

    def __init__(self, n_in: int, n_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or n_in != n_out:
            self.skip = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.skip(x))


class SmallResNet(nn.Module):
    """A 2-D ResNet-style classifier of (N, C, H, W) images; logits (N, n_outputs).

    ``widths`` gives the channels of each stage (stage 1 keeps the resolution, each later stage halves
    it); ``blocks_per_stage`` basic blocks per stage. ``n_tabular > 0`` adds the fusion path: an MLP
    (Linear → ReLU, ``tabular_hidden`` units) of the tabular features whose output is concatenated with
    the image embedding before the linear head; ``forward(x, tabular)`` then needs ``tabular``.
    """

    def __init__(self, in_channels: int = 1, n_outputs: int = 1, widths: Sequence[int] = (16, 32, 64),
                 blocks_per_stage: int = 1, dropout: float = 0.1, n_tabular: int = 0,
                 tabular_hidden: int = 16) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1 or blocks_per_stage < 1 or in_channels < 1:
            raise ConfigError(f"SmallResNet needs at least one stage of positive width and one block per stage; "
                              f"got widths={list(widths)}, blocks_per_stage={blocks_per_stage}, "
                              f"in_channels={in_channels}")
        self.n_tabular = int(n_tabular)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages: list[nn.Module] = []
        width = widths[0]
        for k, out in enumerate(widths):
            blocks = [BasicBlock(width, out, stride=1 if k == 0 else 2)]
            blocks += [BasicBlock(out, out) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            width = out
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.tabular: nn.Module | None = None
        head_in = width
        if self.n_tabular > 0:
            self.tabular = nn.Sequential(nn.Linear(self.n_tabular, tabular_hidden), nn.ReLU())
            head_in += tabular_hidden
        self.head = nn.Linear(head_in, n_outputs)

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional stage: the layer Grad-CAM reads."""
        return self.stages[-1]

    def features(self, x: Tensor) -> Tensor:
        """The last stage's feature maps (N, widths[-1], H', W')."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def embed(self, x: Tensor) -> Tensor:
        """The image embedding (N, widths[-1]): globally average-pooled last-stage features."""
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: Tensor, tabular: Tensor | None = None) -> Tensor:
        z = self.dropout(self.embed(x))
        if self.tabular is not None:
            if tabular is None:
                raise DataError(f"this fusion net needs {self.n_tabular} tabular feature(s) beside the images; "
                                "got none")
            z = torch.cat([z, self.tabular(tabular)], dim=1)
        elif tabular is not None:
            raise DataError("this net was built for images only (n_tabular=0); got tabular features")
        return self.head(z)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the image feature extractor (stem and stages)."""
        yield from self.stem.parameters()
        yield from self.stages.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the head (and of the tabular path of a fusion net)."""
        if self.tabular is not None:
            yield from self.tabular.parameters()
        yield from self.head.parameters()


class UNet2D(UNet):
    """MONAI's 2-D U-Net, refusing input whose height or width its down-sampling cannot halve exactly."""

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], num_res_units: int,
                 dropout: float) -> None:
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ConfigError(f"a U-Net needs at least two levels of channels; got {list(channels)}")
        super().__init__(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, channels=channels,
                         strides=(2,) * (len(channels) - 1), num_res_units=num_res_units, dropout=dropout)
        self.divisor = 2 ** (len(channels) - 1)

    def check_size(self, height: int, width: int) -> None:
        if height % self.divisor or width % self.divisor:
            raise DataError(f"the U-Net with {len(self.channels)} levels needs image height and width divisible "
                            f"by {self.divisor}; got {height}×{width} (crop or pad the slices)")

    def forward(self, x: Tensor) -> Tensor:
        self.check_size(int(x.shape[-2]), int(x.shape[-1]))
        return super().forward(x)


def unet(in_channels: int = 1, out_channels: int = 2, channels: Sequence[int] = (16, 32, 64, 128),
         num_res_units: int = 1, dropout: float = 0.0) -> UNet2D:
    """A 2-D MONAI U-Net with stride 2 between levels; H and W must be divisible by 2**(len(channels)-1)."""
    return UNet2D(in_channels, out_channels, channels, num_res_units, dropout)


def _unet_levels(net: UNet) -> tuple[list[nn.Module], list[nn.Module]]:
    """The encoder (down) modules, top level first and the bottom layer last, and the decoder (up) modules."""
    down: list[nn.Module] = []
    up: list[nn.Module] = []
    level: nn.Module = net.model
    while isinstance(level, nn.Sequential) and len(level) == 3 and isinstance(level[1], SkipConnection):
        down.append(level[0])
        up.append(level[2])
        level = level[1].submodule
    down.append(level)  # the bottom layer
    return down, up


def layer_groups(net: nn.Module) -> dict[str, list[nn.Module]]:
    """Named groups of modules for fine-tuning: what ``freeze`` names and ``backbone_lr`` applies to.

    SmallResNet: "stem", "stage1".."stageK", "backbone" (stem and all stages) and "head" (head and the
    tabular path). U-Net: "stage1".."stageK" (the encoder levels, the bottom layer last), "backbone"
    (the whole encoder) and "head" (the decoder).
    """
    if isinstance(net, SmallResNet):
        groups: dict[str, list[nn.Module]] = {"stem": [net.stem]}
        groups |= {f"stage{k + 1}": [stage] for k, stage in enumerate(net.stages)}
        groups["backbone"] = [net.stem, net.stages]
        groups["head"] = [net.head] + ([net.tabular] if net.tabular is not None else [])
        return groups
    if isinstance(net, UNet):
        down, up = _unet_levels(net)
        groups = {f"stage{k + 1}": [module] for k, module in enumerate(down)}
        groups["backbone"] = list(down)
        groups["head"] = list(up)
        return groups
    raise ConfigError(f"no layer groups are defined for {type(net).__name__}; expected SmallResNet or a U-Net")
