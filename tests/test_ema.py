"""The EMA of the weights: the flat-buffer update equals the per-parameter definition, in fp32 whatever the
parameters' dtype, and its state saves and loads like any state dict."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from reactdiff.train.ema import EMA


def make_net(dtype=torch.float32):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.GroupNorm(1, 7), torch.nn.Linear(7, 3))
    net[1].weight.requires_grad_(False)  # frozen parameters are not averaged
    return net.to(dtype)


@pytest.mark.parametrize("flat", [False, True])  # per parameter (the CPU default), one flat lerp (the GPU one)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_updates_equal_the_definition(dtype, flat):
    net = make_net(dtype)
    ema = EMA(net, max_decay=0.9, power=1.0, flat_update=flat)
    ref = {n: p.detach().float().clone() for n, p in net.named_parameters() if p.requires_grad}
    assert set(ema.shadow) == set(ref) and "1.weight" not in ema.shadow
    for step in range(1, 6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.update(step)
        w = 1 - ema.decay(step)
        for n, p in net.named_parameters():
            if n in ref:
                ref[n].lerp_(p.detach().float(), w)
    for n, v in ema.shadow.items():
        assert v.dtype == torch.float32 and torch.equal(v, ref[n]), n


def test_state_dict_round_trip(tmp_path):
    net = make_net()
    ema = EMA(net)
    state = ema.state_dict()
    save_file(state, str(tmp_path / "ema.safetensors"))  # refuses tensors that share memory
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    other = EMA(net)
    other.load_state_dict(load_file(str(tmp_path / "ema.safetensors")))
    assert all(torch.equal(other.shadow[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="EMA state lacks 1 parameters"):
        other.load_state_dict({k: v for k, v in state.items() if k != "0.bias"})
