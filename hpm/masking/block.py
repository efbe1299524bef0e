"""Block-wise masking (BEiT): rectangles of patches, vectorised over the batch."""

from __future__ import annotations

import math

import torch

from hpm.masking.ids import MaskIds, split_by_order
from hpm.masking.strategy import MaskRequest, MaskStrategy


def block_mask(
    num_images: int,
    grid_size: tuple[int, int],
    num_mask: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    min_patches: int = 4,
    aspect: float = 0.3,
    num_blocks: int | None = None,
) -> MaskIds:
    """Mask exactly ``num_mask`` patches per image as a union of random rectangles.

    Rectangles (area uniform in [min_patches, num_mask], log-uniform aspect ratio in
    [aspect, 1/aspect]) are drawn in sequence; patches are masked in the order of the first
    rectangle that covers them, so whole blocks are added until K is reached and the last
    block is cut to fit. Patches no rectangle covers fill any remainder at random.

    Args:
        num_images: N.
        grid_size: patch rows, columns.
        num_mask: K.
        generator: seeded generator on ``device``.
        device: where the masks are made.
        min_patches: smallest block area in patches.
        aspect: smallest aspect ratio (height / width).
        num_blocks: rectangles drawn per image (default: enough to cover K several times).
    """
    gh, gw = grid_size
    n_l = gh * gw
    lo = min(max(min_patches, 1), num_mask)
    nb = num_blocks or max(4, math.ceil(4 * num_mask / lo))
    rand = torch.rand(4, num_images, nb, 1, generator=generator, device=device)  # [4, N, B, 1]
    area = lo + rand[0] * (num_mask - lo)
    log_r = math.log(aspect) + rand[1] * (-2 * math.log(aspect))
    ratio = torch.exp(log_r)
    h = torch.sqrt(area * ratio).round().clamp(1, gh)
    w = torch.sqrt(area / ratio).round().clamp(1, gw)
    top = (rand[2] * (gh - h + 1)).floor()
    left = (rand[3] * (gw - w + 1)).floor()
    rows = torch.arange(gh, device=device).repeat_interleave(gw).view(1, 1, n_l)  # [1, 1, L]
    cols = torch.arange(gw, device=device).repeat(gh).view(1, 1, n_l)
    covered = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)  # [N, B, L]
    block_index = torch.arange(nb, device=device, dtype=torch.float32).view(1, nb, 1)
    first = torch.where(covered, block_index, float(nb)).amin(dim=1)  # [N, L]
    tie = torch.rand(num_images, n_l, generator=generator, device=device)
    order = torch.argsort(first + tie, dim=1)  # earliest block first, random inside a block
    return split_by_order(order, num_mask)


def _block_request(request: MaskRequest) -> MaskIds:
    """The global batch's blocks (drawn as one), this rank's rows kept."""
    mc = request.cfg
    masks = block_mask(
        request.num_global, request.grid, request.num_mask, request.generator, request.device,
        mc.block_min_patches, mc.block_aspect,
    )
    return masks.rows(*request.rows)


BLOCK = MaskStrategy("block", _block_request, takes="images")
