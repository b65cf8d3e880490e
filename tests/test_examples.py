"""Every example runs, in a reduced form, and does what it says."""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
pytest.importorskip("lightning")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_deblur_gradient_loss_sharpens(tmp_path) -> None:
    import deblur

    args = "--steps 120 --image-size 32 --batch-size 8 --eval-images 16 --quiet".split()
    results = deblur.main(args + ["--output-dir", str(tmp_path)])
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert set(results) == {"l1", "l1+gradient", "degraded"}
    assert set(results["l1"]) == {"psnr", "gradient_error", "ssim"}
    # both runs learned (better than the degraded input), and the gradient loss sharpened more
    l1, gradient, degraded = (results[k] for k in ("l1", "l1+gradient", "degraded"))
    assert l1["psnr"] > degraded["psnr"] and gradient["psnr"] > degraded["psnr"]
    assert gradient["gradient_error"] < l1["gradient_error"] < degraded["gradient_error"]
    for run, columns in (("l1", {"l1", "loss"}), ("l1_gradient", {"l1", "gradient", "loss"})):
        rows = list(csv.DictReader(open(tmp_path / "logs" / run / "metrics.csv")))
        assert columns <= set(rows[0]) and len(rows) == 12  # logged every 10 of the 120 steps


def test_deblur_data_is_deterministic_and_reads_a_folder(tmp_path) -> None:
    import deblur
    from PIL import Image

    a, b = deblur.DegradedImages(4, 24, seed=5), deblur.DegradedImages(4, 24, seed=5)  # procedural
    assert all(torch.equal(x, y) for x, y in zip(a[2], b[2]))
    assert not torch.equal(a[1][1], deblur.DegradedImages(4, 24, seed=6)[1][1])
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a_red.png")
    Image.new("L", (16, 12), 30).save(tmp_path / "b_grey.png")  # grey, and smaller than the crop
    held_out, train = deblur.folder_files(tmp_path, "eval"), deblur.folder_files(tmp_path, "train")
    assert [f.name for f in held_out] == ["a_red.png"] and [f.name for f in train] == ["b_grey.png"]
    _, clean = deblur.DegradedImages(2, 24, seed=0, photos=held_out)[0]
    assert clean.shape == (3, 24, 24) and clean[0].min() > 0.7 and clean[1].max() < 0.1
    _, grey = deblur.DegradedImages(2, 24, seed=0, photos=train)[0]
    assert grey.shape == (3, 24, 24) and torch.allclose(grey[0], grey[1])
    with pytest.raises(SystemExit):
        deblur.main(["--data", "procedural", "--data-dir", str(tmp_path)])


def test_deblur_photographs_load_offline_and_train_apart_from_held_out() -> None:
    import deblur

    assert not set(deblur.TRAIN_PHOTOS) & set(deblur.HELD_OUT_PHOTOS) and deblur.FIGURE_PHOTO in deblur.HELD_OUT_PHOTOS
    for name in deblur.TRAIN_PHOTOS + deblur.HELD_OUT_PHOTOS:  # bundled in scikit-image's wheel: no download
        photo = deblur.skimage_photo(name)
        assert photo.dtype == torch.float32 and photo.shape[0] == 3 and min(photo.shape[1:]) >= 150
        assert 0 <= float(photo.min()) and float(photo.max()) <= 1 and float(photo.std()) > 0.05
    data = deblur.DegradedImages(3, 32, seed=1, photos=deblur.TRAIN_PHOTOS, blur=(1.5, 1.5), noise=0.0)
    degraded, clean = data[2]
    assert torch.equal(clean, deblur.DegradedImages(3, 32, seed=1, photos=deblur.TRAIN_PHOTOS)[2][1])
    assert clean.shape == degraded.shape == (3, 32, 32) and 0 <= float(clean.min()) and float(clean.max()) <= 1
    # the degradation blurs: less gradient energy, the same mean
    blurred, sharp = (float(deblur.sobel_magnitude(t[None]).mean()) for t in (degraded, clean))
    assert blurred < 0.8 * sharp
    assert abs(float(degraded.mean() - clean.mean())) < 0.02


def test_deblur_ssim_matches_scikit_image() -> None:
    import deblur
    from skimage.metrics import structural_similarity

    torch.manual_seed(0)
    x = torch.rand(3, 3, 40, 48, dtype=torch.float64)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    options = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0)
    reference = [structural_similarity(a.numpy(), b.numpy(), **options) for a, b in zip(x, y)]
    torch.testing.assert_close(deblur.ssim(x, y), torch.tensor(reference, dtype=torch.float64))
    assert torch.allclose(deblur.ssim(x, x), torch.ones(3, dtype=torch.float64))


def test_style_transfer_smoke(tmp_path) -> None:
    import style_transfer

    out = tmp_path / "styled.png"
    for seed in (0, 10, 17):  # the seeds that once made plain L-BFGS diverge
        result = style_transfer.main(
            ["--random-weights", "--size", "48", "--steps", "8", "--seed", str(seed), "--output", str(out), "--quiet"]
        )
        assert out.exists() and result["final"] < result["history"][0]


def test_style_transfer_offline_message(tmp_path, monkeypatch, capsys) -> None:
    import urllib.error

    import style_transfer

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SystemExit) as info:
        style_transfer.main(["--size", "48", "--steps", "1", "--output", str(tmp_path / "x.png")])
    assert "vgg19-" in str(info.value.code) and "weights=" in str(info.value.code)


def test_plain_loop_with_mixed_precision_and_compile() -> None:
    import plain_loop

    args = ["--random-weights", "--steps", "3", "--image-size", "32", "--batch-size", "4"]
    eager = plain_loop.main(args)
    torch._dynamo.reset()
    compiled = plain_loop.main(args + ["--compile"])
    assert len(compiled["history"]) == 3
    # the same seed, data and bf16 autocast: the compiled steps follow the eager ones
    torch.testing.assert_close(torch.tensor(compiled["history"]), torch.tensor(eager["history"]), rtol=0.05, atol=1e-3)


def test_sobel_match_converges() -> None:
    import sobel_match

    result = sobel_match.main(["--steps", "150", "--size", "32"])
    assert result["history"][-1] < 0.1 * result["history"][0]
    assert result["error"] < 0.15


def test_operators_demo(capsys) -> None:
    import operators_demo

    operators_demo.main()
    printed = capsys.readouterr().out
    assert "torchgrad.gradient == torch.gradient on the reference example: True" in printed
    assert "torchgrad.sobel 0" in printed and "@" in printed  # nothing saved; edges drawn
