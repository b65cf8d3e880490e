"""EdgeAwareSmoothnessLoss against monodepth2's get_smooth_loss, written as it is there."""

from __future__ import annotations

import pytest
import torch

from torchgrad.losses import EdgeAwareSmoothnessLoss
from torchgrad.losses.functional import edge_aware_smoothness_loss


def monodepth2_smooth_loss(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_img_x = torch.mean(torch.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
    grad_img_y = torch.mean(torch.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
    grad_disp_x *= torch.exp(-grad_img_x)
    grad_disp_y *= torch.exp(-grad_img_y)
    return grad_disp_x.mean() + grad_disp_y.mean()


@pytest.mark.parametrize("normalize", [True, False])
def test_matches_monodepth2(normalize: bool) -> None:
    disp = torch.rand(2, 1, 7, 9, dtype=torch.float64, requires_grad=True)
    image = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    ours = EdgeAwareSmoothnessLoss(normalize=normalize)(disp, image)
    norm_disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7) if normalize else disp
    ref = monodepth2_smooth_loss(norm_disp, image)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, disp)[0], torch.autograd.grad(ref, disp)[0])
    assert torch.autograd.gradcheck(lambda d: edge_aware_smoothness_loss(d, image, normalize=normalize), (disp,))


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
    assert torch.isnan(edge_aware_smoothness_loss(torch.rand(0, 1, 6, 6), torch.rand(0, 3, 6, 6), normalize=False))


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
        saved: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            edge_aware_smoothness_loss(disp, image, normalize=normalize)
        new = [t for t in saved if t.data_ptr() not in (disp.data_ptr(), image.data_ptr())]
        assert sum(t.numel() * t.element_size() for t in new) <= limit


def test_bad_input() -> None:
    loss = EdgeAwareSmoothnessLoss()
    with pytest.raises(ValueError, match="share N, H and W"):
        loss(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 8, 9))
    with pytest.raises(ValueError, match=r"must be \(N, C, H, W\)"):
        loss(torch.rand(2, 1, 4, 8, 8), torch.rand(2, 3, 4, 8, 8))
    with pytest.raises(TypeError, match="`image` must be a torch.Tensor"):
        loss(torch.rand(2, 1, 8, 8), None)
    assert repr(loss) == "EdgeAwareSmoothnessLoss(normalize=True, reduction='mean')"
