"""Run under torchrun: the global-batch contrastive loss and its gradients, computed by 2 processes.

Each process embeds its half of a fixed global batch; features are all-gathered with gradient,
DDP averages parameter gradients. Rank 0 writes the loss and gradients for the test to compare
with one process on the whole batch.
"""
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from fusemix.model import FusionConfig, FusionModel, ModalitySpec


def build():
    torch.manual_seed(0)
    m = FusionModel(FusionConfig({"image": ModalitySpec("a", 12), "text": ModalitySpec("b", 10)},
                                 proj_dim=8, depth=2, expansion=2, dropout=0.0))
    g = torch.Generator().manual_seed(1)
    return m, torch.randn(16, 12, generator=g), torch.randn(16, 10, generator=g)


def main(out):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, x, y = build()
    model.loss_fn.gather = True
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    shard = 16 // world
    loss = ddp("image", x[rank * shard:(rank + 1) * shard], "text", y[rank * shard:(rank + 1) * shard])
    loss.backward()
    if rank == 0:
        grads = {f"grad.{k}": p.grad for k, p in model.named_parameters()}
        save_file({"loss": loss.detach().reshape(1), **grads}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
