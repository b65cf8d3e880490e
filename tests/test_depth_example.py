"""examples/depth.py runs, in a reduced form, and does what it says; its scoring is right on known answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
pytest.importorskip("skimage")


def test_scene_is_the_motorcycle_at_half_resolution() -> None:
    import depth

    scene = depth.Scene(blur=2.5)
    assert scene.image.shape == (3, 250, 370) and scene.disparity.shape == scene.mask.shape == (1, 250, 370)
    assert 0.85 < scene.mask.float().mean() < 0.95  # 93% valid at full resolution, all four of a block here
    assert (scene.disparity[~scene.mask] == 0).all() and scene.disparity[scene.mask].min() > 5
    assert torch.isfinite(scene.blurred).all() and scene.largest == float(scene.disparity.max())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = depth.simulated_prediction(scene.blurred, g1, 0.03), depth.simulated_prediction(scene.blurred, g2, 0.03)
    assert torch.equal(a, b)
    inputs = depth.network_input(scene.image[None], a[None])
    assert inputs.shape == (1, 4, 250, 370)
    torch.testing.assert_close(inputs[0, 3].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(inputs[0, 3].std(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_score_on_known_answers() -> None:
    import depth

    truth = torch.full((6, 8), 10.0)
    truth[:, 4:] = 20.0  # one depth edge: a step of 10 px between columns 3 and 4
    mask = torch.ones(6, 8, dtype=torch.bool)
    mask[0, 0] = False
    edges = depth.depth_edges(truth, mask, 1.0)
    assert edges.sum() == 6 and edges[1, :, 3].all()  # (dy, dx): the six rows' dx across the step
    result, aligned = depth.score(3 * truth - 7, truth, mask, edges)  # any scale and shift is aligned away
    torch.testing.assert_close(aligned, truth)
    assert result["abs_rel"] == 0 and result["delta1"] == 1
    assert result["gradient_error"] == 0 and result["edge_gradient_error"] == 0
    blurred = truth.clone()
    blurred[:, 4] = 15.0  # the edge spread over two steps of 5
    result, _ = depth.score(blurred, truth, mask, edges)
    assert result["edge_gradient_error"] > 2 and result["abs_rel"] > 0 and result["delta1"] < 1


def test_depth_example_reduced(tmp_path) -> None:
    import depth

    results = depth.main(["--steps", "100", "--batch-size", "4", "--output-dir", str(tmp_path), "--quiet"])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert list(results) == ["input", "data term", "+ gradient matching"]
    metrics = {"abs_rel", "delta1", "gradient_error", "edge_gradient_error"}
    assert all(set(r) == metrics for r in results.values())
    data, matching, given = results["data term"], results["+ gradient matching"], results["input"]
    # after a hundred steps both refinements beat the blurred input in delta < 1.25 and at the depth edges, and the
    # gradient-matching term has kept the copied image texture out (the data term alone adds gradient error)
    for run in (data, matching):
        assert run["delta1"] > given["delta1"] and run["edge_gradient_error"] < given["edge_gradient_error"]
    assert (
        data["gradient_error"] > given["gradient_error"] and matching["gradient_error"] < data["gradient_error"] - 0.05
    )
    from PIL import Image

    with Image.open(tmp_path / "depth.png") as figure:
        assert figure.width > 5 * 159 and figure.height > 2 * 250
