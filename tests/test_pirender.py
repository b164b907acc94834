"""PIRender: the generator's checkpoint layout (names, shapes, size), strict loading with clear errors, the flow
and warp maths, 27-frame driving windows, reference preprocessing, and `reactdiff render --pirender`."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reactdiff.render import pirender as P
from reactdiff.render.cli import main as render_main
from conftest import sample_random_init


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return P.FaceGenerator().eval()


@pytest.fixture(scope="module")
def checkpoint(generator, tmp_path_factory):
    path = tmp_path_factory.mktemp("pirender") / "cur_model_fold.pth"
    torch.save({"net_G_ema": generator.state_dict(), "current_epoch": 190}, path)
    return path


def test_checkpoint_layout(generator):
    sd = generator.state_dict()
    assert len(sd) == 306 and not list(generator.buffers())
    shapes = {  # the released generator (config face.yaml) plus the REACT retraining's 58 -> 73 pre-layer
        "mapping_net.pre.weight": (73, 58, 1), "mapping_net.first.0.weight": (256, 73, 7),
        "mapping_net.encoder2.1.weight": (256, 256, 3),
        "warpping_net.hourglass.encoder.input_layer.weight": (32, 3, 7, 7),
        "warpping_net.hourglass.encoder.encoder4.conv_0.weight": (256, 256, 4, 4),
        "warpping_net.hourglass.encoder.encoder0.norm_0.mlp_gamma.weight": (32, 128),
        "warpping_net.hourglass.decoder.decoder3.conv_s.weight": (512, 256, 3, 3),
        "warpping_net.hourglass.decoder.decoder2.conv_1.weight": (128, 128, 3, 3),
        "warpping_net.flow_out.0.weight": (256, 1, 1), "warpping_net.flow_out.2.weight": (2, 256, 7, 7),
        "editing_net.encoder.first.model.0.weight": (64, 6, 7, 7),
        "editing_net.encoder.down2.model.1.bias": (256, 1, 1),
        "editing_net.decoder.res0.res1.conv1.weight": (128, 128, 3, 3),
        "editing_net.decoder.up0.model.0.weight": (64, 128, 3, 3),
        "editing_net.decoder.final.model.0.weight": (3, 64, 7, 7),
    }
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert sum(v.numel() for v in sd.values()) == 22_523_416
    assert sum(p.numel() for p in P.FaceGenerator(in_nc=None).parameters()) == 22_519_109  # the original PIRender


def test_forward_shapes_and_range(generator):
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        out = generator(image, torch.randn(2, 58, 27))
    assert out["flow_field"].shape == (2, 2, 16, 16) and out["warp_image"].shape == (2, 3, 64, 64)
    assert out["fake_image"].shape == (2, 3, 64, 64) and out["fake_image"].abs().max() <= 1
    with torch.no_grad():
        assert "fake_image" not in generator(image, torch.randn(2, 58, 27), stage="warp")
    assert generator.mapping_net(torch.randn(3, 58, 27)).shape == (3, 256, 1)  # 27 -> 21 -> 15 -> 9 -> 3 -> pooled


@pytest.mark.parametrize("wrap", ["net_G_ema", "net_G", "state_dict", None, "module"])
def test_checkpoints_load_strictly_in_every_layout(generator, tmp_path, wrap):
    sd = generator.state_dict()
    if wrap == "module":
        obj = {"module." + k: v for k, v in sd.items()}
    else:
        obj = sd if wrap is None else {wrap: sd}
    torch.save(obj, tmp_path / "g.pth")
    loaded = P.load_generator(tmp_path / "g.pth")
    image, driving = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 58, 27)
    with torch.no_grad():
        assert torch.equal(loaded(image, driving)["fake_image"], generator(image, driving)["fake_image"])


def test_checkpoint_errors(generator, tmp_path):
    sd = generator.state_dict()
    cases = {
        "no_pre": ({k: v for k, v in sd.items() if not k.startswith("mapping_net.pre")}, "original PIRender"),
        "missing": ({k: v for k, v in sd.items() if "final" not in k}, r"2 missing \['editing_net.decoder.final"),
        "shape": ({**sd, "warpping_net.flow_out.2.weight": torch.zeros(3, 256, 7, 7)},
                  r"wrong shapes \['warpping_net.flow_out.2.weight \(3, 256, 7, 7\) \(expected \(2, 256, 7, 7\)\)'\]"),
        "other": ({"encoder.weight": torch.zeros(2)}, "not a PIRender generator"),
    }
    for name, (state, match) in cases.items():
        torch.save({"net_G_ema": state}, tmp_path / f"{name}.pth")
        with pytest.raises(ValueError, match=match):
            P.load_generator(tmp_path / f"{name}.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        P.load_generator(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="PIRender checkpoint not found"):
        P.load_generator(tmp_path / "none.pth")


def test_flow_to_deformation_and_warp():
    flow = torch.zeros(1, 2, 5, 9)
    grid = P.flow_to_deformation(flow)[0]
    assert grid[0, 0].tolist() == [-1, -1] and grid[-1, -1].tolist() == [1, 1] and grid[2, 4].tolist() == [0, 0]
    flow[:, 0] = 8 / 2  # half the width (w - 1 = 8 pixels) in x: +1 in normalised units
    assert torch.allclose(P.flow_to_deformation(flow)[0, :, :, 0] - grid[..., 0], torch.ones(5, 9))
    source = torch.rand(1, 3, 20, 20)
    deformation = P.flow_to_deformation(torch.randn(1, 2, 5, 5))
    up = F.interpolate(deformation.permute(0, 3, 1, 2), size=(20, 20), mode="bilinear").permute(0, 2, 3, 1)
    want = F.grid_sample(source, up, align_corners=False)
    assert torch.allclose(P.warp(source, deformation), want)


def test_driving_windows_are_clamped():
    coeffs = torch.arange(30, dtype=torch.float32)[:, None].expand(30, 58)
    w = P.driving_windows(coeffs)
    assert w.shape == (30, 58, 27)
    assert w[0, 0].tolist() == [0] * 14 + list(range(1, 14))  # frames -13..13, clamped at 0
    assert w[20, 0].tolist() == list(range(7, 30)) + [29] * 4  # clamped at the last frame
    assert w[15, 5].tolist() == list(range(2, 29))


def test_reference_preprocessing():
    image = np.zeros((256, 256, 3), np.uint8)
    image[16:240, 16:240] = 255  # the centre 224 x 224 is white, the border black
    ref = P.reference_tensor(image, 224)
    assert ref.shape == (1, 3, 224, 224) and ref.min() >= -1 and ref.max() <= 1
    assert ref[0, :, 1:-1, 1:-1].min() > 0.9  # the crop keeps the centre
    assert P.reference_tensor(image[:, :200], 64).shape == (1, 3, 64, 64)  # any aspect, any size


def test_pirenderer_frames(generator):
    r = P.PIRenderer(generator, size=64, chunk=3)
    ref = (np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8)
    frames = np.concatenate(list(r.frames(np.random.default_rng(1).normal(0, 1, (7, 58)), ref)))
    assert frames.shape == (7, 64, 64, 3) and frames.dtype == np.uint8
    with pytest.raises(ValueError, match="multiple of 32"):
        P.PIRenderer(generator, size=100)


def test_render_command_with_pirender(tiny_shards, checkpoint, tmp_path, capsys):
    samples = tmp_path / "samples"
    sample_random_init(tiny_shards, samples, 30, k=1, window=16)
    out = tmp_path / "photo"
    assert render_main(["--samples", str(samples), "--pirender", str(checkpoint), "--shards", str(tiny_shards),
                        "--out", str(out), "--rows", "2", "--ground-truth", "--size", "64", "--frames", "4",
                        "--quiet"]) == 0
    for name in ("k0", "gt"):
        with av.open(str(out / f"00002/{name}.mp4")) as c:
            assert (c.streams.video[0].width, c.streams.video[0].height) == (128, 64)
            assert sum(1 for _ in c.decode(video=0)) == 4
    assert render_main(["--samples", str(samples), "--pirender", str(checkpoint), "--out", str(tmp_path / "x"),
                        "--quiet"]) == 2
    assert "--pirender needs --shards" in capsys.readouterr().err
