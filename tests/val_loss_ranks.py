"""Run under torchrun: the validation loss of one fixed tiny model, every rank its share; rank 0 writes the result.

    torchrun --nproc_per_node N tests/val_loss_ranks.py SHARDS VAL_SHARDS OUT.json BATCH_SIZE
"""
import json
import sys

import torch

from reactdiff import config, dist
from reactdiff.model.export import build_model
from reactdiff.train.validation import ValidationSet


def main(shards: str, val_shards: str, out: str, batch_size: int) -> None:
    env = dist.init()
    cfg = config.load(None, ["model.size=tiny", "data.history=8", "data.window=16", f"data.shards={shards}",
                             f"data.val_shards={val_shards}"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.unet.out.weight, std=0.05)  # a network whose output is not zero
    vset = ValidationSet.from_shards(cfg, model.dim, model.density, val_shards, windows=10, levels=3)
    loss = vset.loss(model, env.rank, env.world_size, batch_size)
    if env.rank == 0:
        json.dump(loss.tolist(), open(out, "w"))
    dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
