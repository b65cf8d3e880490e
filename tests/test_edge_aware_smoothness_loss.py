"""EdgeAwareSmoothnessLoss against monodepth2's get_smooth_loss, written as it is there."""

from __future__ import annotations

import pytest
import torch
from helpers import saved_bytes

from torchgrad.losses.functional import edge_aware_smoothness_loss


def monodepth2_smooth_loss(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_img_x = torch.mean(torch.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
    grad_img_y = torch.mean(torch.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
    grad_disp_x *= torch.exp(-grad_img_x)
    grad_disp_y *= torch.exp(-grad_img_y)
    return grad_disp_x.mean() + grad_disp_y.mean()


def naive_edge_aware(disp: torch.Tensor, img: torch.Tensor, reduction: str) -> torch.Tensor:
    """Both terms per element, each at the positions where its forward difference exists."""
    term_y = (disp[:, :, 1:] - disp[:, :, :-1]).abs() * torch.exp(-(img[:, :, 1:] - img[:, :, :-1]).abs().mean(1, True))
    term_x = (disp[..., 1:] - disp[..., :-1]).abs() * torch.exp(-(img[..., 1:] - img[..., :-1]).abs().mean(1, True))
    if reduction == "mean":
        return term_y.mean() + term_x.mean()
    if reduction == "sum":
        return term_y.sum() + term_x.sum()
    # zeros on the last row of the y term and the last column of the x term, stacked as (N, C, 2, H, W)
    padded_y = torch.cat([term_y, torch.zeros_like(term_y[:, :, :1])], dim=2)
    padded_x = torch.cat([term_x, torch.zeros_like(term_x[..., :1])], dim=3)
    return torch.stack([padded_y, padded_x], dim=2)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_monodepth2_and_plain_autograd(reduction: str, normalize: bool) -> None:
    """The mean is monodepth2's (each term averaged over its own positions), the others the plain formula's."""
    gen = torch.Generator().manual_seed(1)
    disp = torch.rand(3, 2, 6, 9, dtype=torch.float64, generator=gen).requires_grad_()
    image = torch.rand(3, 3, 6, 9, dtype=torch.float64, generator=gen)
    ours = edge_aware_smoothness_loss(disp, image, normalize=normalize, reduction=reduction)
    norm_disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7) if normalize else disp
    if reduction == "mean":
        ref = monodepth2_smooth_loss(norm_disp, image)
    else:
        ref = naive_edge_aware(norm_disp, image, reduction)
        torch.testing.assert_close(ours.sum(), naive_edge_aware(norm_disp, image, "sum"))
    assert ours.shape == ref.shape == {"none": (3, 2, 2, 6, 9)}.get(reduction, ())
    torch.testing.assert_close(ours, ref)
    probe = torch.randn(ours.shape, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(
        torch.autograd.grad((ours * probe).sum(), disp)[0], torch.autograd.grad((ref * probe).sum(), disp)[0]
    )
    assert torch.autograd.gradcheck(
        lambda d: edge_aware_smoothness_loss(d, image, normalize=normalize, reduction=reduction), (disp,)
    )


def test_image_is_a_constant() -> None:
    disp = torch.rand(2, 1, 6, 6, requires_grad=True)
    image = torch.rand(2, 3, 6, 6, requires_grad=True)
    edge_aware_smoothness_loss(disp, image).backward()
    assert image.grad is None and disp.grad is not None


def test_vmap_and_empty_batch() -> None:
    from torch.func import vmap

    disp, image = torch.rand(4, 2, 1, 6, 7) + 0.1, torch.rand(4, 2, 3, 6, 7)
    batched = vmap(edge_aware_smoothness_loss)(disp, image)
    torch.testing.assert_close(batched, torch.stack([edge_aware_smoothness_loss(disp[i], image[i]) for i in range(4)]))
    # the mean and the sum over no images: test_fused_penalty.py
    empty = edge_aware_smoothness_loss(torch.rand(0, 1, 6, 6), torch.rand(0, 3, 6, 6), reduction="none")
    assert empty.shape == (0, 1, 2, 6, 6)


def test_flat_disparity_has_no_loss_and_edges_reduce_it() -> None:
    image = torch.zeros(1, 3, 8, 8)
    assert edge_aware_smoothness_loss(torch.ones(1, 1, 8, 8), image) == 0
    disp = torch.zeros(1, 1, 8, 8)
    disp[..., 4:] = 1.0
    edged = image.clone()
    edged[..., 4:] = 1.0
    assert edge_aware_smoothness_loss(disp, edged, normalize=False) < edge_aware_smoothness_loss(
        disp, image, normalize=False
    )


def test_saves_no_more_than_the_normalized_disparity() -> None:
    disp = torch.rand(2, 1, 16, 16, requires_grad=True)
    image = torch.rand(2, 3, 16, 16)
    for normalize, limit in ((False, 0), (True, disp.numel() * 4 + 64)):
        call = lambda: edge_aware_smoothness_loss(disp, image, normalize=normalize)  # noqa: E731
        assert saved_bytes(call, (disp, image)) <= limit


def test_autocast() -> None:
    """Under CPU autocast a bfloat16 disparity gives a float32 loss, as the other losses do, equal to the loss of
    the disparity and image in float32; a float64 disparity keeps float64."""
    disparity, image = torch.rand(2, 1, 12, 12).bfloat16(), torch.rand(2, 3, 12, 12).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = edge_aware_smoothness_loss(disparity, image)
    assert loss.dtype == torch.float32
    assert loss == edge_aware_smoothness_loss(disparity.float(), image.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert edge_aware_smoothness_loss(disparity.double(), image.double()).dtype == torch.float64
