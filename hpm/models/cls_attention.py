"""The [CLS] token's attention over the patches in one ViT block (AttMask's score).

AttMask (Kakogeorgiou et al., ECCV 2022) masks patches by how much the teacher's class token
attends to them in its last encoder block, averaged over heads. Only the class token's query is
needed, so the score costs one ``q @ k`` row per head, not the block's full attention.
"""

from __future__ import annotations

from timm.models.vision_transformer import Block
from torch import Tensor


def cls_attention(block: Block, x: Tensor) -> Tensor:
    """Softmax attention of the class token (row 0) over the other tokens, mean over heads.

    Args:
        block: a timm ``Block`` (pre-norm: ``norm1`` then ``attn``).
        x: [N, 1 + L, D] the block's input, class token first.

    Returns:
        float32 [N, L]: the head-averaged weight the class token gives each patch token (the
        softmax runs over all 1 + L tokens, so a row sums to 1 minus the weight on itself).
    """
    attn = block.attn
    n, t, _ = x.shape
    qkv = attn.qkv(block.norm1(x)).reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0][:, :, :1]), attn.k_norm(qkv[1])  # [N, H, 1, hd], [N, H, T, hd]
    logits = (q.float() * attn.scale) @ k.float().transpose(-2, -1)  # [N, H, 1, T]
    return logits.softmax(dim=-1)[:, :, 0, 1:].mean(dim=1)  # [N, L]
