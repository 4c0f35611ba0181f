"""Fully connected families of seed 000 (FC-1, FC-2) and seed 001 (FC 1280->500->527)."""

from __future__ import annotations

from torch import Tensor, nn

from tagtune.trainables.models._registry import register_family, register_variant
from tagtune.trainables.params import float_range, int_range

#: Hidden widths and dropout rates every fully connected family accepts.
WIDTH = int_range(1, 65536)
DROPOUT = float_range(0.0, 1.0, high_open=True)
#: How many trials of a fully connected family share one GPU: on an H200 16 processes of the loop
#: gave fc2 10x the epochs per second of one (README, GPUs).
FC_TRIALS_PER_GPU = 16
#: fc2's hidden layers: seed 000's FC-2 has one; hear-eval-kit's grid also tries two.
LAYERS = int_range(1, 4)


class FC(nn.Module):
    """All seconds of a clip flattened into one vector, then zero or more hidden layers."""

    def __init__(self, n_inputs: int, hidden: tuple[int, ...], n_classes: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register_family(
    "fc1",
    description="seed 000 FC-1: flattened clip (1280) -> classes, one layer",
    constraints={"dropout": DROPOUT},
    trials_per_gpu=FC_TRIALS_PER_GPU,
)
def fc1(*, n_frames: int, n_features: int, n_classes: int, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), FC(n_frames * n_features, (), n_classes, 0.0))


@register_family(
    "fc2",
    description="seed 000 FC-2: flattened clip -> hidden (1024) -> classes",
    # Inputs in [0, 1] are all positive, so Adam at 1e-3 moves every hidden pre-activation by up to
    # ~1280 * 0.5 * lr per step and kills ReLUs: on bal_train lr 1e-3 / dropout 0.5 reached val
    # mAUC 0.87 after 5 epochs (3e-3: chance), lr 3e-4 / dropout 0.2 0.94 after 6.
    train_defaults={"lr": 3e-4},
    constraints={"hidden": WIDTH, "dropout": DROPOUT, "layers": LAYERS},
    trials_per_gpu=FC_TRIALS_PER_GPU,  # fc500 inherits it
)
def fc2(
    *, n_frames: int, n_features: int, n_classes: int, hidden: int = 1024, dropout: float = 0.2, layers: int = 1
) -> nn.Module:
    return FC(n_frames * n_features, (hidden,) * layers, n_classes, dropout)


register_variant(
    "fc500",
    base="fc2",
    description="seed 001 FC: flattened clip -> 500 -> classes (xavier init, batch 500)",
    defaults={"hidden": 500},
    # lr 1e-3 (not fc2's 3e-4): with batches of 500 there are 8x fewer steps per epoch; on
    # bal_train val mAUC 0.940 after 10 epochs, 0.929 with 3e-4.
    train_defaults={"batch_size": 500, "init": "xavier_uniform", "lr": 1e-3},
)
