"""WavLM's self-attention in memory linear in the clip's length.

transformers' `WavLMAttention` builds its gated relative-position bias as a (batch x heads, T, T) tensor in the first
layer, hands it to every later layer, and calls `multi_head_attention_forward` with it, which forms the (batch x
heads, T, T) scores and weights beside it: about 26 bytes per score, 2.8 GB for one 60 s clip with WavLM-base's 12
heads. `BlockwiseWavLMAttention` computes the same attention a block of queries at a time. The bias depends only on
the distance between query and key, so the first layer hands on one row of it per head, (heads, 2T - 1), and each
block reads its (heads, block, T) slice as a strided view of that row (no gather). Nothing of size T x T is ever
held; a block's scores stay under `BLOCK_SCORES` numbers. The arithmetic is the reference's (same scaling, `baddbmm`
with the bias, softmax, dropout, then the value product), so outputs agree to float rounding, and the time is the
reference's (benchmarks/README.md).

`use_blockwise_wavlm_attention(encoder)` swaps the class of every `WavLMAttention` in an encoder. The subclass adds no
parameters or buffers, so the weights, their names and checkpoints are untouched, and `enabled=False` swaps back
(`mtqnet export-onnx` does: a tracer would freeze the block count at the example's length; do the same before
tracing a model yourself). All of an encoder's layers must use the same class: the bias the first layer hands on
has a different shape in each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

# Scores (batch x heads x block x keys) of one block of queries: 4M floats, 16 MB per tensor of that shape. At 10 s
# (about 500 frames) a WavLM-base clip is one block, as in the reference.
BLOCK_SCORES = 2**22


class BlockwiseWavLMAttention(WavLMAttention):
    """`WavLMAttention` without any T x T tensor: same weights, same outputs, memory linear in T.

    `position_bias` is, between layers, the relative-position bias by distance: (heads, 2T - 1), where column
    `T - 1 + (key - query)` holds the bias of that distance. The first layer (the one with `rel_attn_embed`)
    makes it; later layers receive it. Attention weights are not returned (`None`).
    """

    def bias_by_distance(self, length: int) -> torch.Tensor:
        """(heads, 2 * length - 1): the first layer's relative-position bias for each key - query distance."""
        distances = torch.arange(-(length - 1), length, device=self.rel_attn_embed.weight.device)
        return self.rel_attn_embed(self._relative_positions_bucket(distances)).transpose(0, 1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        index: int = 0,
        **kwargs,
    ) -> tuple[torch.Tensor, None, torch.Tensor]:
        batch, length, _ = hidden_states.shape
        heads, head_dim = self.num_heads, self.head_dim
        if position_bias is None:
            position_bias = self.bias_by_distance(length)

        # The gate of the bias, one per query and head (as in WavLMAttention.forward, steps 1-3).
        per_head = hidden_states.view(batch, length, heads, head_dim).permute(0, 2, 1, 3)
        projected = self.gru_rel_pos_linear(per_head).view(batch, heads, length, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(projected).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0  # (batch, heads, T, 1)

        def split_heads(states: torch.Tensor) -> torch.Tensor:
            return states.view(batch, length, heads, head_dim).transpose(1, 2).reshape(batch * heads, length, -1)

        # multi_head_attention_forward scales the projected queries by 1 / sqrt(head_dim) before the product.
        query = split_heads(self.q_proj(hidden_states)) * math.sqrt(1.0 / head_dim)
        key_t = split_heads(self.k_proj(hidden_states)).transpose(1, 2)
        value = split_heads(self.v_proj(hidden_states))
        padded_keys = None
        if attention_mask is not None:
            padded_keys = attention_mask.ne(1)[:, None, None, :]  # (batch, 1, 1, T)

        # Row r of the bias's sliding windows is the bias of query T - 1 - r against every key, in key order
        # (windows[h, r, j] = position_bias[h, r + j], a view: nothing is copied). So the queries run in reverse
        # order, a block of them reads a slice of the windows, and the outputs are put back in order at the end.
        windows = position_bias.to(gate.dtype).unfold(1, length, 1)  # (heads, T, T) view of (heads, 2T - 1)
        reversed_query, reversed_gate = query.flip(1), gate.flip(2)
        block = max(1, BLOCK_SCORES // (batch * heads * length))
        outputs = []
        for start in range(0, length, block):
            stop = min(length, start + block)
            # (batch, heads, block, T): the block's gated bias
            bias = reversed_gate[:, :, start:stop] * windows[:, start:stop]
            if padded_keys is not None:
                bias = bias.masked_fill(padded_keys, float("-inf"))
            # In place on the block's own bias (baddbmm would first copy it into a new result), at the queries'
            # dtype: bfloat16 under autocast, as autocast runs baddbmm.
            scores = bias.to(query.dtype).reshape(batch * heads, stop - start, length)
            scores = scores.baddbmm_(reversed_query[:, start:stop], key_t)
            weights = F.dropout(torch.softmax(scores, dim=-1), p=self.dropout, training=self.training)
            outputs.append(torch.bmm(weights, value))
        attended = torch.cat(outputs, dim=1).flip(1).view(batch, heads, length, head_dim).transpose(1, 2)
        attended = self.out_proj(attended.reshape(batch, length, heads * head_dim))
        return attended, None, position_bias


def use_blockwise_wavlm_attention(encoder: nn.Module, enabled: bool = True) -> int:
    """Swap every WavLM attention of `encoder` to `BlockwiseWavLMAttention` (or back, `enabled=False`) in place;
    returns how many were swapped. Other encoders (wav2vec2, HuBERT, ...) are left as they are (0)."""
    source, target = (WavLMAttention, BlockwiseWavLMAttention) if enabled else (BlockwiseWavLMAttention, WavLMAttention)
    swapped = 0
    for module in encoder.modules():
        if type(module) is source:
            module.__class__ = target
            swapped += 1
    return swapped


__all__ = ["BLOCK_SCORES", "BlockwiseWavLMAttention", "use_blockwise_wavlm_attention"]
