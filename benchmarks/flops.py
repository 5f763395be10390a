"""The machine's matmul peak and the FLOPs a training step asks of it, for throughput.py's `% peak` columns."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from machine import timed


def matmul_peak_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 8) -> float:
    """Best GFLOP/s of an n x n matmul in `dtype` with the current torch threads."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = min(timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def training_flops_per_image(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision) -> float:
    """Forward + backward FLOPs (convolutions and matmuls) of one training step, per image."""
    with FlopCounterMode(display=False) as counter:
        with precision.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(y)


def conv_ceiling(model: torch.nn.Module, x: torch.Tensor, precision, reps: int = 10) -> float:
    """GFLOP/s of the model's convolutions alone, forward + backward, in the step's dtype and layout, on the inputs
    they see in a training step (best of `reps`). No model step can reach a higher fraction of the peak: the rest of
    a step (normalisation, activations, pooling, loss, optimizer) adds time and almost no counted FLOPs."""
    seen = []

    def keep(mod, inp, out) -> None:
        seen.append((mod, inp[0].detach().clone(memory_format=torch.preserve_format), inp[0].requires_grad,
                     torch.randn_like(out)))

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with precision.autocast():
        model(x)
    for h in hooks:
        h.remove()

    def run() -> None:
        for mod, inp, needs_grad, grad_out in seen:
            inp.requires_grad_(needs_grad)
            with precision.autocast():
                out = mod(inp)
            out.backward(grad_out)
            mod.weight.grad = mod.bias.grad = inp.grad = None

    with FlopCounterMode(display=False) as counter:
        run()
    for _ in range(3):
        run()
    return counter.get_total_flops() / min(timed(run) for _ in range(reps)) / 1e9
