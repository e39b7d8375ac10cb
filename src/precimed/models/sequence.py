"""Pure sequence networks: GRU, LSTM, causal dilated temporal CNN and a small Transformer encoder.

Every net reads a sequence ``x`` of shape (n, T, C) on a regular grid whose last step is the prediction
time, encodes it to one vector, joins the static features (age, sex, ...) and maps the result through a
small head to ``n_outputs`` numbers (1 for Cox / BCE / MSE, K for cross-entropy).

Static features travel either as a second argument, ``net(x, static)``, or packed into the same tensor
as extra channels repeated over time, ``net(torch.cat([x, static[:, None].expand(-1, T, -1)], -1))``:
with ``static=None`` the last ``n_static`` channels are split off and read at the first step. The packed
form lets the training loop slice one tensor by rows.

Constructors hold the architecture only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["SEQUENCE_NETS", "GRUNet", "LSTMNet", "SequenceNet", "TemporalCNN", "TransformerNet",
           "sinusoidal_positions"]


class SequenceNet(nn.Module):
    """Base: split packed static channels, encode the sequence, join static features, apply the head."""

    def __init__(self, n_channels: int, n_static: int = 0, n_outputs: int = 1, head_hidden: int = 16,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.n_static = n_static

    def _make_head(self, width: int, n_outputs: int, head_hidden: int, dropout: float) -> None:
        width += self.n_static
        if head_hidden > 0:
            self.head = nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(head_hidden, n_outputs))
        else:
            self.head = nn.Linear(width, n_outputs)

    def encode(self, x: Tensor) -> Tensor:  # (n, T, C) -> (n, width)
        raise NotImplementedError

    def forward(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        if static is None and self.n_static:
            x, static = x[..., : self.n_channels], x[:, 0, self.n_channels:]
        if x.shape[-1] != self.n_channels:
            raise ValueError(f"{type(self).__name__} expects {self.n_channels} sequence channels "
                             f"(+ {self.n_static} static), got input of shape {tuple(x.shape)}")
        h = self.encode(x)
        if self.n_static:
            h = torch.cat([h, static], dim=-1)
        return self.head(h)


class _Recurrent(SequenceNet):
    cell: type[nn.Module] = nn.GRU

    def __init__(self, n_channels: int, n_static: int = 0, n_outputs: int = 1, hidden: int = 32, layers: int = 1,
                 dropout: float = 0.1, head_hidden: int = 16) -> None:
        super().__init__(n_channels, n_static, n_outputs, head_hidden, dropout)
        self.rnn = self.cell(n_channels, hidden, num_layers=layers, batch_first=True,
                             dropout=dropout if layers > 1 else 0.0)
        self._make_head(hidden, n_outputs, head_hidden, dropout)

    def encode(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return out[:, -1]  # the state at the prediction time


class GRUNet(_Recurrent):
    """Gated recurrent unit; the hidden state at the last step (the prediction time) is the summary."""

    cell = nn.GRU


class LSTMNet(_Recurrent):
    """Long short-term memory; the hidden state at the last step (the prediction time) is the summary."""

    cell = nn.LSTM


class _CausalBlock(nn.Module):
    """Two causal dilated convolutions with a residual connection (a temporal-convolutional block)."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv1 = nn.Conv1d(n_in, n_out, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(n_out, n_out, kernel_size, dilation=dilation)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # (n, C, T)
        h = self.drop(self.act(self.conv1(nn.functional.pad(x, (self.pad, 0)))))
        h = self.drop(self.act(self.conv2(nn.functional.pad(h, (self.pad, 0)))))
        return self.act(h + self.skip(x))


class TemporalCNN(SequenceNet):
    """Causal dilated 1-D CNN: block i has dilation 2**i, padding only on the left, so the output at a
    step sees that step and earlier ones only. The output at the last step is the summary; it sees the
    last ``receptive_field`` steps, so choose layers and kernel_size to cover the grid."""

    def __init__(self, n_channels: int, n_static: int = 0, n_outputs: int = 1, hidden: int = 32, layers: int = 2,
                 kernel_size: int = 3, dropout: float = 0.1, head_hidden: int = 16) -> None:
        super().__init__(n_channels, n_static, n_outputs, head_hidden, dropout)
        self.kernel_size = kernel_size
        blocks: list[nn.Module] = []
        width = n_channels
        for i in range(layers):
            blocks.append(_CausalBlock(width, hidden, kernel_size, 2**i, dropout))
            width = hidden
        self.blocks = nn.Sequential(*blocks)
        self._make_head(hidden, n_outputs, head_hidden, dropout)

    @property
    def receptive_field(self) -> int:
        """How many steps the output at the last step sees: 1 + 2 (kernel - 1)(2**layers - 1)."""
        return 1 + 2 * (self.kernel_size - 1) * (2 ** len(self.blocks) - 1)

    def encode(self, x: Tensor) -> Tensor:
        return self.blocks(x.transpose(1, 2))[:, :, -1]


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed sine/cosine positional encoding (Vaswani et al. 2017), shape (length, dim)."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return pe


class TransformerNet(SequenceNet):
    """Small Transformer encoder over the bins, with sinusoidal positions and a key-padding mask.

    ``mask_channels = (start, stop)`` names the observation-mask channels of the input: a bin whose mask
    channels are all 0 (nothing observed in it) is padded out of attention. The last bin (the prediction
    time) is never padded, so a patient with an empty window still gets a finite output from carried
    values and static features. The summary is the mean of the encoder outputs over unpadded bins.
    """

    def __init__(self, n_channels: int, n_static: int = 0, n_outputs: int = 1, hidden: int = 32, layers: int = 1,
                 heads: int = 2, dropout: float = 0.1, head_hidden: int = 16,
                 mask_channels: Sequence[int] | None = None) -> None:
        super().__init__(n_channels, n_static, n_outputs, head_hidden, dropout)
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} must be divisible by the number of heads {heads}")
        self.mask_channels = None if mask_channels is None else (int(mask_channels[0]), int(mask_channels[1]))
        self.embed = nn.Linear(n_channels, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self._make_head(hidden, n_outputs, head_hidden, dropout)

    def padding_mask(self, x: Tensor) -> Tensor:
        """True where a bin is empty (to be ignored); never the last bin."""
        n, T, _ = x.shape
        if self.mask_channels is None:
            return torch.zeros(n, T, dtype=torch.bool, device=x.device)
        start, stop = self.mask_channels
        empty = x[..., start:stop].sum(dim=-1) <= 0
        empty[:, -1] = False
        return empty

    def encode(self, x: Tensor) -> Tensor:
        pad = self.padding_mask(x)
        h = self.embed(x) + sinusoidal_positions(x.shape[1], self.embed.out_features, x.device)
        h = self.encoder(h, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return (h * keep).sum(dim=1) / keep.sum(dim=1)


SEQUENCE_NETS: dict[str, type[SequenceNet]] = {
    "gru": GRUNet,
    "lstm": LSTMNet,
    "cnn": TemporalCNN,
    "transformer": TransformerNet,
}
