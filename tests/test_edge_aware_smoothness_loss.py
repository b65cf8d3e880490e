"""EdgeAwareSmoothnessLoss against monodepth2's get_smooth_loss, written as it is there."""

from __future__ import annotations

import pytest
import torch

from losses import EdgeAwareSmoothnessLoss
from losses.functional import edge_aware_smoothness_loss


def monodepth2_smooth_loss(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_img_x = torch.mean(torch.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
    grad_img_y = torch.mean(torch.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
    grad_disp_x *= torch.exp(-grad_img_x)
    grad_disp_y *= torch.exp(-grad_img_y)
    return grad_disp_x.mean() + grad_disp_y.mean()


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("image_requires_grad", [False, True])
def test_matches_monodepth2(normalize: bool, image_requires_grad: bool) -> None:
    disp = torch.rand(2, 1, 7, 9, dtype=torch.float64, requires_grad=True)
    image = torch.rand(2, 3, 7, 9, dtype=torch.float64, requires_grad=image_requires_grad)
    ours = EdgeAwareSmoothnessLoss(normalize=normalize)(disp, image)
    norm_disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7) if normalize else disp
    ref = monodepth2_smooth_loss(norm_disp, image)
    torch.testing.assert_close(ours, ref)
    inputs = (disp, image) if image_requires_grad else (disp,)
    for a, b in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs)):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda *t: edge_aware_smoothness_loss(*t, normalize=normalize) if image_requires_grad else edge_aware_smoothness_loss(t[0], image, normalize=normalize), inputs)


def test_flat_disparity_has_no_loss_and_edges_reduce_it() -> None:
    image = torch.zeros(1, 3, 8, 8)
    assert edge_aware_smoothness_loss(torch.ones(1, 1, 8, 8), image) == 0
    disp = torch.zeros(1, 1, 8, 8)
    disp[..., 4:] = 1.0
    edged = image.clone()
    edged[..., 4:] = 1.0
    assert edge_aware_smoothness_loss(disp, edged, normalize=False) < edge_aware_smoothness_loss(disp, image, normalize=False)


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
    assert repr(loss) == "EdgeAwareSmoothnessLoss(normalize=True)"
