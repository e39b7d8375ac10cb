"""Sequence nets: shapes, static features joined, causality of the CNN, padding of empty bins."""

from __future__ import annotations

import pytest
import torch

from precimed.models.sequence import SEQUENCE_NETS, GRUNet, TemporalCNN, TransformerNet, sinusoidal_positions

N, T, C, S = 5, 6, 4, 3


def _build(kind, **kw):
    if kind == "transformer":
        kw.setdefault("mask_channels", (2, 4))
    return SEQUENCE_NETS[kind](C, n_static=S, **kw).eval()


@pytest.mark.parametrize("kind", list(SEQUENCE_NETS))
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_every_net_gives_one_row_per_patient_packed_or_with_separate_static(kind, n_outputs):
    torch.manual_seed(0)
    net = _build(kind, n_outputs=n_outputs)
    x = torch.randn(N, T, C)
    x[..., 2:4] = 1.0  # every bin observed
    static = torch.randn(N, S)
    packed = torch.cat([x, static[:, None].expand(-1, T, -1)], dim=-1)
    with torch.no_grad():
        a, b = net(packed), net(x, static)
    assert a.shape == (N, n_outputs)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", list(SEQUENCE_NETS))
def test_static_features_reach_the_output(kind):
    torch.manual_seed(1)
    net = _build(kind)
    x = torch.randn(N, T, C)
    with torch.no_grad():
        assert not torch.allclose(net(x, torch.zeros(N, S)), net(x, torch.ones(N, S)))


def test_the_temporal_cnn_is_causal_a_later_step_never_changes_an_earlier_output():
    torch.manual_seed(2)
    net = TemporalCNN(C, hidden=8, layers=3, kernel_size=3).eval()
    x = torch.randn(N, T, C)
    later = x.clone()
    later[:, 4:] = torch.randn(N, T - 4, C)
    with torch.no_grad():
        a = net.blocks(x.transpose(1, 2))
        b = net.blocks(later.transpose(1, 2))
    torch.testing.assert_close(a[:, :, :4], b[:, :, :4])
    assert not torch.allclose(a[:, :, 4:], b[:, :, 4:])
    assert net.receptive_field == 1 + 2 * 2 * 7


def test_the_transformer_ignores_empty_bins_but_never_the_last_one():
    torch.manual_seed(3)
    net = TransformerNet(C, hidden=8, heads=2, mask_channels=(2, 4)).eval()
    x = torch.randn(N, T, C)
    x[..., 2:4] = 1.0
    x[:, 1, 2:4] = 0.0  # bin 1 empty
    noisy = x.clone()
    noisy[:, 1, :2] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(noisy))
        empty = torch.zeros(N, T, C)
        assert net.padding_mask(empty)[:, -1].logical_not().all()
        assert torch.isfinite(net(empty)).all()


def test_recurrent_nets_summarize_at_the_last_step():
    torch.manual_seed(4)
    net = GRUNet(C, hidden=8).eval()
    x = torch.randn(N, T, C)
    changed = x.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(net(x), net(changed))


def test_positions_and_wrong_shapes_are_checked():
    pe = sinusoidal_positions(7, 5)
    assert pe.shape == (7, 5) and torch.all(pe[0, 1::2] == 1.0)
    with pytest.raises(ValueError, match="divisible"):
        TransformerNet(C, hidden=10, heads=3)
    with pytest.raises(ValueError, match="expects 4 sequence channels"):
        GRUNet(C)(torch.randn(N, T, C + 1))
