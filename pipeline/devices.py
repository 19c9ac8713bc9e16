"""Where a torch stage runs: its device, its mixed precision, and its place among torchrun's processes.

A job runs on CUDA when it has a GPU and ``device`` is ``auto`` (or ``cuda``), else on the CPU.
Training stages launched by ``torchrun`` (one process per granted GPU, or per requested CPU process)
find their rank in the environment that torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
join one process group: NCCL on GPUs, gloo on CPUs. A stage started without torchrun is rank 0 of 1.

Batch-norm statistics: with several processes each sees only its share of a batch. On CUDA
torch's ``SyncBatchNorm`` shares them; torch has none for CPUs, so :class:`GlobalBatchNorm` does
the same there with a differentiable all-reduce (the gloo tests use it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("off", "bf16", "fp16")


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of ``name`` (auto | cpu | cuda) for the process of ``local_rank`` on its node.

    ``cuda`` without a visible GPU is an error (the job asked for one and has none); ``auto`` falls
    back to the CPU.
    """
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}: expected one of {', '.join(DEVICES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device: cuda, but this job sees no GPU (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for a forward pass: ``bf16`` or ``fp16`` on CUDA; nothing on the CPU or with ``off``
    (CPU runs stay float32, so that they stay bit-reproducible)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if device.type != "cuda" or precision == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler for fp16 on CUDA; a disabled one (a no-op) otherwise."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and precision == "fp16")


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place among the job's processes."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the outputs and the logs; the others only compute."""
        return self.rank == 0


def processes_from_env() -> Processes:
    """This process's rank, world size and local rank as torchrun set them (0 of 1 without torchrun)."""
    return Processes(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def process_group(processes: Processes, device: torch.device) -> Iterator[None]:
    """Join the job's process group (NCCL on CUDA, gloo on the CPU) for the block; nothing for one process."""
    if not processes.distributed:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=processes.rank,
                            world_size=processes.world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_reduce_sum(value: float, device: torch.device) -> float:
    """``value`` summed over the job's processes (itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover the batch of every process (an all-reduce of the
    per-channel count, sum and sum of squares, differentiable): :class:`torch.nn.SyncBatchNorm` for
    CPUs. Without a process group, or in eval mode, it is plain batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        count = torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype, device=input.device)
        stats = torch.cat([count, input.sum(dims), (input * input).sum(dims)])
        stats = dist_nn.all_reduce(stats)
        n, channels = stats[0], input.shape[1]
        mean = stats[1:1 + channels] / n
        var = stats[1 + channels:] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / max(float(n) - 1, 1.0))
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def share_batch_statistics(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every batch norm sharing its statistics across the job's processes:
    torch's SyncBatchNorm on CUDA, :class:`GlobalBatchNorm` on the CPU (weights and buffers kept)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _to_global_batch_norm(model)


def _to_global_batch_norm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        if module.affine:   # the same parameters, so that an optimizer made before goes on updating them
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _to_global_batch_norm(child))
    return module
