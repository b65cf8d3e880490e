"""The losses where they are used: Lightning fit and checkpoints for each loss, and data-parallel
training in two processes that must agree with one process on the same global batch."""

from __future__ import annotations

import warnings

import pytest
import torch

L = pytest.importorskip("lightning")

from lightning_modules import LOSSES, LossModule, RankInterleaved, image_pairs  # noqa: E402

QUIET = dict(
    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
)


@pytest.fixture(autouse=True)
def _quiet_lightning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*random weights.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*reference is not registered.*")
        yield


@pytest.mark.parametrize("loss_name", LOSSES)
def test_fit_log_checkpoint(loss_name: str, vgg_files, tmp_path) -> None:
    weights = dict(vgg16=str(vgg_files["vgg16"]["features"]), vgg19=str(vgg_files["vgg19"]["features"]))
    data = torch.utils.data.DataLoader(image_pairs(8), batch_size=4)
    module = LossModule(loss_name, **weights)
    start = [p.detach().clone() for p in module.model.parameters()]
    trainer = L.Trainer(max_steps=4, **QUIET)
    trainer.fit(module, data)
    assert f"train/{loss_name}" in trainer.callback_metrics and "train/l1" in trainer.callback_metrics
    if loss_name == "perceptual_gradient":
        assert {"train/perceptual", "train/gradient"} <= set(trainer.callback_metrics)
    assert any(not torch.equal(a, b) for a, b in zip(start, module.model.parameters()))
    assert all(not p.requires_grad for p in module.criterion.parameters())

    path = tmp_path / "module.ckpt"
    trainer.save_checkpoint(path)
    assert set(torch.load(path, weights_only=False)["state_dict"]) == {"model.weight", "model.bias"}
    assert path.stat().st_size < 20_000, path.stat().st_size  # nothing of the loss: VGG's weights stay out
    restored = LossModule.load_from_checkpoint(path)
    for a, b in zip(module.model.parameters(), restored.model.parameters()):
        assert torch.equal(a, b)
    moved = restored.double()  # the loss (VGG included) follows the module
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    loss = moved.training_step((x, x), 0)
    assert loss.dtype == torch.float64 and torch.isfinite(loss)


def test_two_process_ddp_matches_one_process(vgg_files, tmp_path) -> None:
    """Two CPU processes (gloo) on batches of 4 end with the same parameters, equal to one process
    on the global batches of 8 (rank r reads samples r, r+2, ...: each step's two batches make up
    the single process's batch). PerceptualGradientLoss holds a GradientLoss and a frozen VGG: one
    spawn (each costs seconds) covers both kinds of loss."""
    loss_name = "perceptual_gradient"
    weights = str(vgg_files["vgg16"]["features"])
    data = image_pairs(16)
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    loader = lambda batch: torch.utils.data.DataLoader(data, batch_size=batch, sampler=RankInterleaved(len(data)))  # noqa: E731
    ddp = L.Trainer(max_steps=3, devices=2, strategy="ddp_spawn", use_distributed_sampler=False, **QUIET)
    ddp.fit(LossModule(loss_name, vgg16=weights, out_dir=str(ddp_dir)), loader(4))
    single = L.Trainer(max_steps=3, devices=1, **QUIET)
    single.fit(LossModule(loss_name, vgg16=weights, out_dir=str(single_dir)), loader(8))

    rank0, rank1 = (torch.load(ddp_dir / f"rank{r}_of_2.pt") for r in (0, 1))
    reference = torch.load(single_dir / "rank0_of_1.pt")
    initial = LossModule(loss_name, vgg16=weights).model.state_dict()
    for key in reference:
        assert torch.equal(rank0[key], rank1[key])
        torch.testing.assert_close(rank0[key], reference[key], rtol=1e-5, atol=1e-6)
        assert not torch.equal(reference[key], initial[key])
