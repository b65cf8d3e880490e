"""VGGFeatures: layer names, values against torchvision, truncation, weights, freezing, checkpoints (input_range
and repeat_grey: tests/test_module_twins.py)."""

from __future__ import annotations

import urllib.error
import warnings

import pytest
import torch
from references import DEVICES, reference_features

from torchgrad.losses import VGGFeatures, WeightsUnavailableError, layer_names


def test_layer_names() -> None:
    vgg16, vgg19, vgg16_bn = layer_names("vgg16"), layer_names("vgg19"), layer_names("vgg16_bn")
    assert sum(n.startswith("conv") for n in vgg16) == 13 and sum(n.startswith("conv") for n in vgg19) == 16
    assert [n for n in vgg16 if n.startswith("pool")] == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert vgg16[vgg16.index("relu4_3") - 1] == "conv4_3" and "relu5_4" in vgg19 and "relu5_4" not in vgg16
    assert vgg16_bn[:3] == ["conv1_1", "bn1_1", "relu1_1"]


@pytest.mark.parametrize(
    "network, layers, pooling",
    [
        ("vgg16", ["relu1_2", "relu2_2", "relu3_3", "relu4_3"], "max"),
        ("vgg16", ["conv3_1", "relu3_1", "pool2", "conv4_2"], "max"),
        ("vgg19", ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], "avg"),
        ("vgg16_bn", ["bn2_1", "relu2_2", "conv3_3"], "max"),
    ],
)
def test_matches_full_torchvision_vgg(vgg_files, network: str, layers: list[str], pooling: str) -> None:
    x = torch.rand(2, 3, 32, 40, dtype=torch.float64, requires_grad=True)
    vgg = VGGFeatures(network, layers, weights=vgg_files[network]["full"], pooling=pooling).double()
    ours = vgg(x)
    # the reference normalises with the module's constants (float32 buffers): with ImageNet's float64 ones, the
    # features differ by about 1e-7, enough to move a max-pooling's choice between two nearly equal values (and
    # its gradient with it) on some random inputs
    constants = (vgg.get_buffer("scale"), vgg.get_buffer("shift"))
    ref = reference_features(network, vgg_files[network]["full"], x, layers, pooling, constants)
    assert list(ours) == layers
    for name in layers:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-5, atol=1e-6)
    probe = {k: torch.randn_like(v) for k, v in ref.items()}
    g_ours = torch.autograd.grad(sum((ours[k] * probe[k]).sum() for k in layers), x)[0]
    g_ref = torch.autograd.grad(sum((ref[k] * probe[k]).sum() for k in layers), x)[0]
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)


def test_truncated_after_the_deepest_layer(vgg_files) -> None:
    vgg = VGGFeatures(layers=("relu2_2", "relu1_1"), weights=vgg_files["vgg16"]["features"])
    assert len(vgg.net) == layer_names("vgg16").index("relu2_2") + 1
    calls: list[int] = []
    for i, module in enumerate(vgg.net):
        module.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    vgg(torch.rand(1, 3, 32, 32))
    assert calls == list(range(len(vgg.net)))
    assert sum(p.numel() for p in vgg.parameters()) < 300_000  # four convolutions, not the 138M of VGG16


def test_full_model_and_features_files_agree(vgg_files) -> None:
    x = torch.rand(1, 3, 32, 32)
    a = VGGFeatures(layers=("conv3_2",), weights=vgg_files["vgg16"]["full"])(x)
    b = VGGFeatures(layers=("conv3_2",), weights=str(vgg_files["vgg16"]["features"]))(x)
    assert torch.equal(a["conv3_2"], b["conv3_2"])


def test_bad_weight_files(tmp_path, vgg_files) -> None:
    (tmp_path / "truncated.pth").write_bytes(vgg_files["vgg16"]["features"].read_bytes()[:1000])
    with pytest.raises(ValueError, match="could not read a state dict from .*truncated.pth"):
        VGGFeatures(weights=tmp_path / "truncated.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VGGFeatures(weights=tmp_path / "missing.pth")
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="holds no VGG features"):
        VGGFeatures(weights=tmp_path / "other.pth")
    with pytest.raises(ValueError, match="lacks"):  # vgg16 weights cannot fill vgg16_bn
        VGGFeatures("vgg16_bn", weights=vgg_files["vgg16"]["features"])


def test_default_weights_come_from_the_hub_cache(tmp_path, monkeypatch, vgg_files) -> None:
    from torchvision.models import VGG16_Weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("must not download"))
    (tmp_path / "checkpoints").mkdir()
    name = VGG16_Weights.DEFAULT.url.rsplit("/", 1)[1]
    (tmp_path / "checkpoints" / name).write_bytes(vgg_files["vgg16"]["full"].read_bytes())
    x = torch.rand(1, 3, 32, 32)
    cached = VGGFeatures(layers=("relu2_2",))(x)
    from torchvision.models import VGG19_Weights

    assert torch.equal(
        VGGFeatures(layers=("relu2_2",), weights=VGG16_Weights.IMAGENET1K_V1)(x)["relu2_2"], cached["relu2_2"]
    )
    with pytest.raises(ValueError, match="not weights of vgg16"):
        VGGFeatures(weights=VGG19_Weights.DEFAULT)
    local = VGGFeatures(layers=("relu2_2",), weights=vgg_files["vgg16"]["full"])(x)
    assert torch.equal(cached["relu2_2"], local["relu2_2"])


def test_offline_error_names_the_file_and_both_remedies(tmp_path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        VGGFeatures("vgg19")
    message = str(info.value)
    assert str(tmp_path / "checkpoints" / "vgg19-") in message  # the file it looked for
    assert "weights='/path/to/state_dict.pth'" in message and "URLError" in message
    assert info.value.__cause__ is None and isinstance(info.value, FileNotFoundError)


def test_random_weights_warn() -> None:
    with pytest.warns(UserWarning, match="random weights .* not perceptual"):
        VGGFeatures(layers=("relu1_1",), weights=None)


def test_frozen_eval_and_out_of_the_state_dict(vgg_files) -> None:
    host = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    host.vgg = VGGFeatures("vgg16_bn", ("relu2_1",), weights=vgg_files["vgg16_bn"]["features"])
    before = {k: v.clone() for k, v in host.vgg.net.state_dict().items()}
    assert all(not p.requires_grad for p in host.vgg.parameters())
    keys = list(host.state_dict())
    assert not any(k.startswith("vgg.") for k in keys) and "0.weight" in keys
    optimizer = torch.optim.SGD(host.parameters(), lr=0.1)
    host.train()
    assert not host.vgg.net.training
    for _ in range(3):
        optimizer.zero_grad()
        x = torch.rand(2, 3, 32, 32)
        out = host[1](host[0](x))
        host.vgg(out)["relu2_1"].mean().backward()
        optimizer.step()
    after = host.vgg.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics included
    assert all(p.grad is None for p in host.vgg.parameters())
    assert host[0].weight.grad is not None
    result = host.load_state_dict(host.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    host.double()
    assert host.vgg.net[0].weight.dtype == torch.float64 and host.vgg.scale.dtype == torch.float64


def test_smallest_input(vgg_files) -> None:
    vgg = VGGFeatures(layers=("relu3_1",), weights=vgg_files["vgg16"]["features"])
    assert vgg(torch.rand(1, 3, 4, 4))["relu3_1"].shape[-2:] == (1, 1)  # two poolings before relu3_1


def test_out_of_range_input_warns_once(vgg_files) -> None:
    vgg = VGGFeatures(layers=("relu1_1",), weights=vgg_files["vgg16"]["features"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vgg(torch.rand(1, 3, 16, 16))  # in range: no warning
        for _ in range(3):
            vgg(torch.rand(1, 3, 16, 16) * 2 - 1)  # [-1, 1] images fed to a [0, 1] loss
    assert len([w for w in caught if "outside input_range" in str(w.message)]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU")
def test_a_cuda_graph_captures_the_first_call(vgg_files) -> None:
    """The range check reads values (it waits for the device) on the first calls only, and not while a CUDA
    graph is captured: capturing the very first call works and replays."""
    vgg = VGGFeatures(layers=("relu1_1",), weights=vgg_files["vgg16"]["features"]).cuda()
    x = torch.rand(1, 3, 16, 16, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # CUDA's and cuDNN's lazy set-up, on another module: vgg itself is not called
        torch.nn.functional.conv2d(x, torch.ones(64, 3, 3, 3, device="cuda"), padding=1).relu()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = vgg(x)["relu1_1"]
    x.copy_(torch.rand_like(x))
    graph.replay()
    torch.testing.assert_close(out, vgg(x)["relu1_1"])


@pytest.mark.parametrize("device", DEVICES)
def test_devices_and_channels_last(device: str, vgg_files) -> None:
    vgg = VGGFeatures(layers=("relu2_2",), weights=vgg_files["vgg16"]["features"]).to(device)
    x = torch.rand(2, 3, 32, 32, device=device)
    a = vgg(x)["relu2_2"]
    b = vgg(x.contiguous(memory_format=torch.channels_last))["relu2_2"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert a.device.type == device
