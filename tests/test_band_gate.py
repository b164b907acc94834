import pytest
import torch

from reactdiff import config
from reactdiff.model.band_gate import BandGate
from reactdiff.model.export import build_model
from reactdiff.model.spectrum import dct_matrix
from reactdiff.model.unet import PRESETS, TemporalUNet

EDGES = (0.02, 0.06, 0.104, 0.2)  # 0.5 / 1.5 / 2.6 / 5 Hz at 25 fps


def cond(b=2, h=11, w=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"speaker_fv": torch.randn(b, h + w, 58, generator=g), "audio": torch.randn(b, h + w, 80, generator=g),
            "past_listener": torch.randn(b, h, 58, generator=g), "valid": torch.ones(b, h + w, dtype=torch.bool)}


@pytest.mark.parametrize("w", [37, 64])
def test_the_bands_split_the_window_by_dct_frequency_and_sum_to_it(w):
    gate = BandGate(10, 8, 3, EDGES)
    x = torch.randn(2, w, 3, dtype=torch.float64)
    bands = gate.split(x)
    assert bands.shape == (2, 5, w, 3)
    torch.testing.assert_close(bands.sum(1), x)
    coef = torch.einsum("kt,bntd->bnkd", dct_matrix(w, dtype=torch.float64), bands)
    freq = torch.arange(w) / (2 * w)
    for n, (lo, hi) in enumerate(zip((0.0, *EDGES), (*EDGES, 0.5))):
        outside = (freq < lo) | (freq >= hi)  # each band holds its coefficients only
        assert coef[:, n, outside].abs().max() < 1e-12
        assert coef[:, n, ~outside].abs().max() > 1e-3
    # DCT coefficient 9 of 64 frames: 9 / 128 cycles per frame = 1.76 Hz at 25 fps, inside band 2 (1.5-2.6 Hz)
    a_cosine = torch.cos(torch.pi * 9 * (torch.arange(64, dtype=torch.float64) + 0.5) / 64)
    nod = gate.split(a_cosine[None, :, None].expand(1, 64, 3))
    torch.testing.assert_close(nod[0, 2], a_cosine[:, None].expand(64, 3))


def test_edges_must_increase_inside_the_nyquist_band():
    for bad in [(), (0.1, 0.05), (0.0, 0.1), (0.2, 0.5), (0.1, 0.1)]:
        with pytest.raises(ValueError, match="band gate edges"):
            BandGate(10, 8, 3, bad)
    for bad, fps in [("[5.0,1.0]", 25), ("[13.0]", 25), ("[0.0,2.0]", 25), ("[1.0]", 0)]:
        with pytest.raises(config.ConfigError, match="band_gate"):
            config.load(None, [f"model.band_gate.edges_hz={bad}", f"model.band_gate.fps={fps}"])
    with pytest.raises(config.ConfigError, match="aligned_speaker"):
        config.load(None, ["model.aligned_speaker=false", "model.band_gate.edges_hz=[1.5]"])
    with pytest.raises(ValueError, match="aligned_speaker"):
        TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], band_gate=EDGES)


def test_an_untrained_gate_is_the_model_without_it_and_a_trained_one_gains_the_bands():
    torch.manual_seed(0)
    kw = {"aligned_speaker": True, "speaker_filter": 4, "null_speaker": True}
    plain = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], **kw)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gated = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], band_gate=EDGES, **kw)
    new = gated.load_state_dict(plain.state_dict(), strict=False)
    assert not new.unexpected_keys and new.missing_keys and all(k.startswith("band_gate.") for k in new.missing_keys)
    c, x, c_noise = cond(), torch.randn(2, 37, 58), torch.randn(2)
    torch.testing.assert_close(gated(x, c_noise, **c), plain(x, c_noise, **c), rtol=0, atol=0)
    with torch.no_grad():  # a gain of 0.5 on band 2 only, whatever the speaker: the band's share of x, halved
        gated.band_gate.out.bias.view(5, 58)[2] = 0.5
    want = plain(x, c_noise, **c) + 0.5 * gated.band_gate.split(x)[:, 2]
    torch.testing.assert_close(gated(x, c_noise, **c), want, rtol=1e-5, atol=1e-5)


def test_the_gains_follow_the_speaker_frame_by_frame_and_the_noise_level():
    torch.manual_seed(0)
    net = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], aligned_speaker=True, speaker_filter=4, band_gate=EDGES)
    with torch.no_grad():
        net.band_gate.out.weight.normal_(0, 0.1)
    c = cond()
    cache = net.prepare(**c)
    emb = net.noise_embed(torch.zeros(2))
    base = net.band_gate.gains(cache["aligned"], emb)
    cue = {**c, "speaker_fv": c["speaker_fv"].clone()}
    cue["speaker_fv"][:, 11 + 5] += 3.0  # a cue at window frame 5: the causal filter's 4 frames, the gate's +-2
    moved = (net.band_gate.gains(net.prepare(**cue)["aligned"], emb) - base).abs().sum((0, 1, 3)) > 0
    assert moved.tolist() == [False] * 3 + [True] * 8 + [False] * 26
    other = net.band_gate.gains(cache["aligned"], net.noise_embed(torch.ones(2)))
    assert (other - base).abs().max() > 1e-4


def test_the_gate_is_built_from_the_config_and_adds_only_its_own_parameters():
    cfg = config.load(config.packaged("quality"), ["model.size=tiny", "model.band_gate.edges_hz=[1.5,2.6]",
                                                   "model.band_gate.group=all"])
    model = build_model(cfg)
    assert model.unet.band_gate.bands == 3 and model.unet.band_gate.out.out_channels == 3 * 58
    torch.testing.assert_close(model.unet.band_gate.edges, torch.tensor([0.06, 0.104], dtype=torch.float64))
    plain = build_model(config.load(config.packaged("quality"), ["model.size=tiny", "model.band_gate.edges_hz=[]",
                                                                 "model.band_gate.span=0"]))
    assert plain.unet.band_gate is None
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == sum(p.numel() for p in model.unet.band_gate.parameters()) > 0


def test_a_gate_on_one_group_gains_its_dims_only():
    cfg = config.load(config.packaged("quality"), ["model.size=tiny", "model.band_gate.edges_hz=[1.5,2.6]",
                                                   "model.band_gate.group=rotation", "model.band_gate.span=0"])
    gate = build_model(cfg).unet.band_gate
    assert gate.out.out_channels == 3 * 3
    with torch.no_grad():
        gate.out.bias.fill_(1.0)  # every band x 1: the rotation dims come back whole, the others get nothing
    x = torch.randn(2, 64, 58)
    out = gate(x, torch.randn(2, 64, gate.inp.in_channels), torch.randn(2, gate.emb.in_features))
    torch.testing.assert_close(out[..., 52:55], x[..., 52:55], rtol=1e-5, atol=1e-5)
    assert not out[..., :52].any() and not out[..., 55:].any()
    with pytest.raises(config.ConfigError, match="band_gate.group"):
        config.load(None, ["model.band_gate.edges_hz=[1.5]", "model.band_gate.group=nose"])


def test_a_gate_with_a_span_sees_the_speakers_past_beyond_the_unets_filter():
    torch.manual_seed(0)
    kw = {"aligned_speaker": True, "speaker_filter": 4, "band_gate": EDGES, "null_speaker": True}
    net = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], band_gate_span=9, **kw)
    with torch.no_grad():
        net.band_gate.out.weight.normal_(0, 0.1)
    c = cond()
    emb = net.noise_embed(torch.zeros(2))

    def gains(c, drop=None):
        cache = net.prepare(**c, drop=drop)
        return net.band_gate.gains(cache["aligned"], emb, cache["gate_speaker"])

    base = gains(c)
    cue = {**c, "speaker_fv": c["speaker_fv"].clone()}
    cue["speaker_fv"][:, 11 - 6] += 3.0  # 6 frames before the window: beyond the U-Net's 4-frame filter
    moved = (gains(cue) - base).abs().sum((0, 1, 3)) > 0
    assert moved.tolist() == [True] * 4 + [False] * 33  # frames 0-2 filter it (9 taps), the 3-tap mid conv: 3
    assert torch.equal(net.prepare(**cue)["aligned"], net.prepare(**c)["aligned"])  # the U-Net's input does not
    dropped = torch.tensor([True, False])  # the unconditional mode sees no speaker in the gate either
    torch.testing.assert_close(gains(cue, dropped)[0], gains(c, dropped)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="band gate spans 13 frames: it needs >= 12 history frames, got 11"):
        TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], band_gate_span=13, **kw).prepare(**c)
    with pytest.raises(ValueError, match="band_gate_span needs band_gate"):
        TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], aligned_speaker=True, band_gate_span=9)
    # an untrained span filter changes nothing: the gate's output layer starts at zero
    plain = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], **kw)
    spanned = TemporalUNet(58, 58, 58, 80, PRESETS["tiny"], band_gate_span=9, **kw)
    new = spanned.load_state_dict(plain.state_dict(), strict=False)
    assert new.missing_keys == ["band_gate.speaker.weight", "band_gate.speaker.bias"]
    x, c_noise = torch.randn(2, 37, 58), torch.randn(2)
    torch.testing.assert_close(spanned(x, c_noise, **c), plain(x, c_noise, **c), rtol=0, atol=0)


def test_the_gate_span_comes_from_the_config_and_is_checked_against_the_history():
    over = ["model.size=tiny", "model.band_gate.span=33"]
    model = build_model(config.load(config.packaged("quality"), [*over, "data.history=32"]))
    gate = model.unet.band_gate
    assert gate.span == 33 and gate.speaker.weight.shape == (64, 58 + 80, 33)
    with pytest.raises(config.ConfigError, match=r"model.band_gate.span=34 frames needs data.history >= 33"):
        config.load(config.packaged("quality"), ["model.band_gate.span=34"])
    with pytest.raises(config.ConfigError, match="span=8 needs model.band_gate.edges_hz"):
        config.load(None, ["model.band_gate.span=8"])
    with pytest.raises(config.ConfigError, match="model.band_gate.span: must be >= 0"):
        config.load(config.packaged("quality"), ["model.band_gate.span=-1"])
