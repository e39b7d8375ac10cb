"""Image nets: output shapes, the fusion path, parameter groups for fine-tuning, and the U-Net's size check."""

from __future__ import annotations

import pytest
import torch

from precimed.errors import ConfigError, DataError
from precimed.models.imaging import SmallResNet, layer_groups, unet


def _ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("widths", [(8,), (8, 16), (4, 8, 16)])
@pytest.mark.parametrize("blocks", [1, 2])
def test_small_resnet_gives_one_logit_row_per_image_and_halves_resolution_between_stages(widths, blocks):
    torch.manual_seed(0)
    net = SmallResNet(in_channels=3, n_outputs=2, widths=widths, blocks_per_stage=blocks).eval()
    x = torch.randn(5, 3, 32, 24)
    assert net(x).shape == (5, 2)
    assert net.embed(x).shape == (5, widths[-1])
    scale = 2 ** (len(widths) - 1)
    assert net.features(x).shape == (5, widths[-1], 32 // scale, 24 // scale)
    assert net.cam_layer is net.stages[-1]
    assert len(net.stages) == len(widths) and all(len(stage) == blocks for stage in net.stages)


def test_the_fusion_net_uses_the_tabular_features_and_requires_them():
    torch.manual_seed(0)
    net = SmallResNet(1, 1, (8, 16), n_tabular=3, tabular_hidden=5).eval()
    x = torch.randn(4, 1, 16, 16)
    assert net.head.in_features == 16 + 5
    a = net(x, torch.zeros(4, 3))
    b = net(x, torch.ones(4, 3))
    assert a.shape == (4, 1) and not torch.allclose(a, b)
    with pytest.raises(DataError, match="needs 3 tabular"):
        net(x)
    with pytest.raises(DataError, match="images only"):
        SmallResNet(1, 1, (8,)).eval()(x, torch.zeros(4, 3))


def test_backbone_and_head_parameters_partition_the_net():
    net = SmallResNet(2, 1, (8, 16), n_tabular=2)
    backbone, head = _ids(net.backbone_parameters()), _ids(net.head_parameters())
    assert not backbone & head
    assert backbone | head == _ids(net.parameters())
    assert _ids(net.tabular.parameters()) <= head


def test_layer_groups_of_the_resnet_name_stem_stages_backbone_and_head():
    net = SmallResNet(1, 1, (8, 16, 32))
    groups = layer_groups(net)
    assert list(groups) == ["stem", "stage1", "stage2", "stage3", "backbone", "head"]
    assert _ids(p for m in groups["backbone"] for p in m.parameters()) == _ids(net.backbone_parameters())
    parts = [_ids(p for m in groups[k] for p in m.parameters()) for k in ("stem", "stage1", "stage2", "stage3")]
    assert set().union(*parts) == _ids(net.backbone_parameters())


@pytest.mark.parametrize("num_res_units", [0, 1])
def test_unet_groups_are_its_encoder_levels_and_cover_every_parameter(num_res_units):
    net = unet(1, 2, (8, 16, 32), num_res_units=num_res_units)
    groups = layer_groups(net)
    assert [k for k in groups if k.startswith("stage")] == ["stage1", "stage2", "stage3"]
    backbone = _ids(p for m in groups["backbone"] for p in m.parameters())
    head = _ids(p for m in groups["head"] for p in m.parameters())
    assert backbone and head and not backbone & head
    assert backbone | head == _ids(net.parameters())


def test_unet_maps_each_pixel_to_class_logits_and_refuses_sizes_it_cannot_halve():
    torch.manual_seed(0)
    net = unet(2, 2, (8, 16, 32, 64)).eval()
    assert net(torch.randn(3, 2, 32, 40)).shape == (3, 2, 32, 40)
    with pytest.raises(DataError, match=r"divisible by 8; got 36×40"):
        net(torch.randn(1, 2, 36, 40))


def test_architectures_that_cannot_be_built_are_config_errors():
    with pytest.raises(ConfigError, match="at least two levels"):
        unet(1, 2, (8,))
    with pytest.raises(ConfigError, match="positive width"):
        SmallResNet(1, 1, ())
    with pytest.raises(ConfigError, match="no layer groups"):
        layer_groups(torch.nn.Linear(2, 2))
