"""A trial's training step captured once as a CUDA graph and replayed (issue 27).

On a GPU a small model's step is launch-bound: the H200 check (``benchmarks/gpu_check.sh``) timed
fc2's eager step at 1.45 ms whatever the batch size (64 or 256), and the same step replayed from a
CUDA graph at 0.24 ms.  :class:`GraphedStep` runs the loop's step eagerly for a few warm-up batches
(on a side stream, as capture wants), captures it once, then replays it for every full batch; a
short last batch runs eagerly on the same weights, gradients and optimizer.

Graphs are used only where the step is the same kernels every time (:func:`graphs_apply`): CUDA,
embedding batches without mixup, shifts or positive mixes, Adam or AdamW (capturable, with the
learning rate a device tensor that the schedules update in place), no EMA and no loss mask.
``TAGTUNE_CUDA_GRAPHS=0`` turns them off.  A capture that fails warns once and the trial goes on
eagerly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["GRAPH_OPTIMIZERS", "GraphedStep", "graphs_apply"]

GRAPH_OPTIMIZERS = ("adam", "adamw")
"""The optimizers whose step can be captured (``capturable=True``)."""


def graphs_apply(cfg: Mapping[str, Any], device: torch.device, kind: str) -> bool:
    """Whether a trial of ``cfg`` on ``device`` with ``kind`` batches trains from a CUDA graph."""
    return (
        device.type == "cuda"
        and os.environ.get("TAGTUNE_CUDA_GRAPHS", "1") != "0"
        and kind == "embeddings"
        and str(cfg["optimizer"]).lower() in GRAPH_OPTIMIZERS
        and float(cfg["ema_decay"]) <= 0
        and float(cfg["loss_mask_alpha"]) <= 0
        and float(cfg["mixup_alpha"]) <= 0
        and int(cfg["shift_augment"]) <= 0
        and float(cfg["positive_mix"]) <= 0
    )


class GraphedStep:
    """``step(idx)``: one training step on the clips ``idx``; its reported loss (a 0-d tensor,
    read before the next step).

    ``body(idx, capturing)`` is the loop's step without ``zero_grad`` (forward, loss, backward,
    clipping, optimizer step; ``capturing``: autocast without its weight cache, as capture needs);
    ``zero_grad(set_to_none)`` clears the gradients.
    """

    WARMUP = 3

    def __init__(
        self, body: Callable[[Tensor, bool], Tensor], zero_grad: Callable[[bool], None], batch_size: int
    ) -> None:
        self.body, self.zero_grad, self.batch_size = body, zero_grad, batch_size
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed, self.warm = False, 0
        self.side = torch.cuda.Stream()
        self.idx: Tensor | None = None
        self.out: Tensor | None = None

    def eager(self, idx: Tensor) -> Tensor:
        # once captured, the gradients are the graph's tensors: zero them in place, keep them
        self.zero_grad(self.graph is None)
        return self.body(idx, False)

    def __call__(self, idx: Tensor) -> Tensor:
        if self.failed or len(idx) != self.batch_size:
            return self.eager(idx)
        if self.graph is None and self.warm < self.WARMUP:
            self.warm += 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                out = self.eager(idx)
            torch.cuda.current_stream().wait_stream(self.side)
            return out
        if self.graph is None and not self._capture(idx):
            return self.eager(idx)
        assert self.graph is not None and self.idx is not None and self.out is not None
        self.idx.copy_(idx)
        self.graph.replay()
        return self.out

    def _capture(self, idx: Tensor) -> bool:
        self.idx = idx.clone()
        self.zero_grad(True)  # the graph's backward allocates the gradients it rewrites
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.out = self.body(self.idx, True)
        except Exception as err:  # an unsupported op: this trial trains without a graph
            torch.cuda.synchronize()
            warnings.warn(f"CUDA graph capture failed, training eagerly: {err}", RuntimeWarning, stacklevel=3)
            self.failed = True
            return False
        self.graph = graph
        return True
