"""The depth losses as their authors wrote them, in plain torch: the oracle of tests/test_depth_losses.py.

MiDaS's loss (Ranftl et al., the published gist of ``ScaleAndShiftInvariantLoss``) and BTS's ``silog_loss``, kept to
the letter: masks multiply, ``det.nonzero()`` decides a singular fit, ``(N, H, W)`` maps. The benchmark times this
form too.
"""

from __future__ import annotations

import torch


def compute_scale_and_shift(prediction, target, mask):
    # system matrix: A = [[a_00, a_01], [a_10, a_11]]
    a_00 = torch.sum(mask * prediction * prediction, (1, 2))
    a_01 = torch.sum(mask * prediction, (1, 2))
    a_11 = torch.sum(mask, (1, 2))
    # right hand side: b = [b_0, b_1]
    b_0 = torch.sum(mask * prediction * target, (1, 2))
    b_1 = torch.sum(mask * target, (1, 2))
    # solution: x = A^-1 . b = [[a_11, -a_01], [-a_10, a_00]] / (a_00 * a_11 - a_01 * a_10) . b
    x_0 = torch.zeros_like(b_0)
    x_1 = torch.zeros_like(b_1)
    det = a_00 * a_11 - a_01 * a_01
    valid = det.nonzero()
    x_0[valid] = (a_11[valid] * b_0[valid] - a_01[valid] * b_1[valid]) / det[valid]
    x_1[valid] = (-a_01[valid] * b_0[valid] + a_00[valid] * b_1[valid]) / det[valid]
    return x_0, x_1


def reduction_batch_based(image_loss, M):
    # average of all valid pixels of the batch
    # avoid division by 0 (if sum(M) = sum(sum(mask)) = 0: sum(image_loss) = 0)
    divisor = torch.sum(M)
    if divisor == 0:
        return 0
    return torch.sum(image_loss) / divisor


def reduction_image_based(image_loss, M):
    # mean of average of valid pixels of an image
    # avoid division by 0 (if M = sum(mask) = 0: image_loss = 0)
    valid = M.nonzero()
    image_loss[valid] = image_loss[valid] / M[valid]
    return torch.mean(image_loss)


REDUCTIONS = {"batch-based": reduction_batch_based, "image-based": reduction_image_based}


def mse_loss(prediction, target, mask, reduction=reduction_batch_based):
    M = torch.sum(mask, (1, 2))
    res = prediction - target
    image_loss = torch.sum(mask * res * res, (1, 2))
    return reduction(image_loss, 2 * M)


def gradient_loss(prediction, target, mask, reduction=reduction_batch_based):
    M = torch.sum(mask, (1, 2))
    diff = prediction - target
    diff = torch.mul(mask, diff)
    grad_x = torch.abs(diff[:, :, 1:] - diff[:, :, :-1])
    mask_x = torch.mul(mask[:, :, 1:], mask[:, :, :-1])
    grad_x = torch.mul(mask_x, grad_x)
    grad_y = torch.abs(diff[:, 1:, :] - diff[:, :-1, :])
    mask_y = torch.mul(mask[:, 1:, :], mask[:, :-1, :])
    grad_y = torch.mul(mask_y, grad_y)
    image_loss = torch.sum(grad_x, (1, 2)) + torch.sum(grad_y, (1, 2))
    return reduction(image_loss, M)


def midas_gradient_matching(prediction, target, mask, scales=4, reduction="batch-based"):
    total = 0
    for scale in range(scales):
        step = pow(2, scale)
        total += gradient_loss(
            prediction[:, ::step, ::step],
            target[:, ::step, ::step],
            mask[:, ::step, ::step],
            reduction=REDUCTIONS[reduction],
        )
    return total


def midas_loss(prediction, target, mask, alpha=0.5, scales=4, reduction="batch-based"):
    """``(loss, prediction_ssi)`` of MiDaS's ``ScaleAndShiftInvariantLoss``."""
    scale, shift = compute_scale_and_shift(prediction, target, mask)
    prediction_ssi = scale.view(-1, 1, 1) * prediction + shift.view(-1, 1, 1)
    total = mse_loss(prediction_ssi, target, mask, reduction=REDUCTIONS[reduction])
    if alpha > 0:
        total += alpha * midas_gradient_matching(prediction_ssi, target, mask, scales, reduction)
    return total, prediction_ssi


def silog_loss(depth_est, depth_gt, mask, variance_focus=0.85):
    """BTS's ``silog_loss.forward`` (AdaBins's ``SILogLoss`` is the same with ``variance_focus`` 0.85)."""
    d = torch.log(depth_est[mask]) - torch.log(depth_gt[mask])
    return torch.sqrt((d**2).mean() - variance_focus * (d.mean() ** 2)) * 10.0
