"""Training techniques of the source reports: each trains, and each pure piece does what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tagtune.errors import InputError
from tagtune.trainables.config import TRAIN_DEFAULTS, resolve_config
from tagtune.trainables.heads import MultiHead, combine_heads, output_layers, replace_output_layer
from tagtune.trainables.loop import TrialData, build_model, fit
from tagtune.trainables.models import get_family
from tagtune.trainables.techniques import (
    ClassIndex,
    loss_mask,
    make_scheduler,
    masked_mean,
    mixup,
    positive_mix,
    random_positive_class,
    resolve_target_class,
    sample_mixup_lambda,
    shift_clamp,
)
from tagtune.trainables.weight_init import init_output_bias

TECHNIQUES = [
    {"output_heads": 3},
    {"optimizer": "adamw", "weight_decay": 0.01},
    {"lr_schedule": "step", "lr_step_epochs": 1, "lr_gamma": 0.5},
    {"lr_schedule": "cosine"},
    {"mixup_alpha": 0.4},
    {"mixup_alpha": 0.4, "mixup_lambda_gt_half": True},
    {"loss_mask_alpha": 0.8},
    {"balanced_batches": True},
    {"shift_augment": 10},
    {"positive_mix": 0.5},
    {"ema_decay": 0.9},
    {"swa_last": 0.5},
    {"target_class": "c2"},
    {
        "target_class": "c1",
        "output_heads": 2,
        "positive_mix": 0.5,
        "balanced_batches": True,
        "shift_augment": 5,
        "mixup_alpha": 0.2,
        "loss_mask_alpha": 0.9,
    },
]


def _id(tech: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in tech.items())


SMALL = {  # two families with differently placed output layers, shrunk to keep the tests fast
    "fc2": {"family": "fc2", "hidden": 32},
    "gcnn": {"family": "gcnn", "filters": 16, "conv_channels": 16, "rnn_hidden": 16},
}


@pytest.mark.parametrize("family", list(SMALL))
@pytest.mark.parametrize("tech", TECHNIQUES, ids=_id)
def test_every_technique_trains(family, tech, tiny_data):
    config = {**SMALL[family], "batch_size": 16, **tech}
    result = fit(config, tiny_data, max_epochs=2)
    assert len(result.history) == 2  # two epochs: the schedules step once
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert result.best["val_mAUC"] == max(h["val_mAUC"] for h in result.history)  # the best epoch is kept
    n_out = 1 if "target_class" in tech else tiny_data.y.shape[1]
    model = build_model(config, n_frames=10, n_features=128, n_classes=tiny_data.y.shape[1])
    model.load_state_dict(result.best_state)  # the kept state fits the rebuilt model
    assert model(torch.rand(4, 10, 128)).shape == (4, n_out)


@pytest.mark.parametrize("tech", TECHNIQUES, ids=_id)
def test_every_technique_learns(tech, tiny_data):
    """Each technique still learns (fc2, 5 epochs; chance is 0.5). Measured with seeds 0, 3, 7
    and one thread: every technique >= 0.79 (loss masking at 0.8 the slowest), most >= 0.9."""
    result = fit({**SMALL["fc2"], "batch_size": 16, **tech}, tiny_data, max_epochs=5)
    assert result.best["val_mAUC"] > 0.7, [round(h["val_mAUC"], 3) for h in result.history]


def test_defaults_keep_the_plain_loop(tiny_data):
    plain = {k: v for k, v in TRAIN_DEFAULTS.items()}
    assert not get_family("fc1").train_defaults  # so TRAIN_DEFAULTS are its defaults
    a = fit({"family": "fc1", "batch_size": 16}, tiny_data, max_epochs=2)
    b = fit({"family": "fc1", **plain, "batch_size": 16}, tiny_data, max_epochs=2)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert set(a.history[0]) == {
        "epoch",
        "train_loss",
        "val_loss",
        "val_mAUC",
        "val_mAP",
        "val_dprime",
        "epoch_seconds",
        "best_val_mAUC",
        "best_val_mAP",
    }


# ---------------------------------------------------------------------------------------------
# Multi-head classifier
# ---------------------------------------------------------------------------------------------


def test_multi_head_replaces_the_output_layer_and_averages_probabilities():
    torch.manual_seed(0)
    model = build_model({"family": "fc2", "hidden": 16, "output_heads": 4}, n_frames=10, n_features=128, n_classes=6)
    heads = output_layers(model, 6)
    assert len(heads) == 4 and len({id(h) for h in heads}) == 4
    assert not torch.equal(heads[0].weight, heads[1].weight)  # independently initialized
    model.eval()  # no dropout
    x = torch.rand(5, 10, 128)
    out = model(x)
    assert out.shape == (5, 6)
    hidden = model.net[:-1](x)
    mean_p = torch.stack([torch.sigmoid(h(hidden)) for h in heads]).mean(0)
    torch.testing.assert_close(torch.sigmoid(out), mean_p, rtol=1e-5, atol=1e-6)


def test_combine_heads_is_exact_and_finite_when_heads_saturate():
    z = torch.tensor([[[200.0, -3.0]], [[-200.0, 1.0]]])  # [heads=2, B=1, C=2]
    out = combine_heads(z, "multilabel")
    assert torch.isfinite(out).all()
    assert out[0, 0].item() == pytest.approx(0.0, abs=1e-5)  # mean of 1 and 0 is 0.5
    expected = torch.logit(torch.sigmoid(z[:, 0, 1]).mean())
    assert out[0, 1].item() == pytest.approx(expected.item(), rel=1e-5)
    one = torch.randn(1, 3, 4)
    torch.testing.assert_close(combine_heads(one, "multilabel"), one[0], rtol=1e-5, atol=1e-5)


def test_single_label_heads_average_softmaxes():
    z = torch.randn(3, 5, 4)
    out = combine_heads(z, "singlelabel")
    torch.testing.assert_close(out.exp(), torch.softmax(z, -1).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(5))
    layer = MultiHead(8, 4, 3, task="singlelabel")
    assert layer(torch.rand(2, 7, 8)).shape == (2, 7, 4)  # works on any leading dims


def test_prior_bias_reaches_every_head():
    model = build_model({"family": "fc1", "output_heads": 3}, n_frames=10, n_features=128, n_classes=6)
    rate = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.05], dtype=torch.float64)
    init_output_bias(model, rate)
    for head in output_layers(model, 6):
        torch.testing.assert_close(head.bias.double(), torch.logit(rate), rtol=1e-5, atol=1e-5)


def test_one_head_leaves_the_model_alone_and_a_bare_linear_is_wrapped():
    model = nn.Sequential(nn.Linear(4, 3))
    assert replace_output_layer(model, 3, 1) is model
    wrapped = replace_output_layer(nn.Linear(4, 3), 3, 2)
    assert isinstance(wrapped, MultiHead) and len(wrapped.heads) == 2
    with pytest.raises(InputError, match="output_heads=2 needs an output nn.Linear with 5 outputs"):
        replace_output_layer(nn.Sequential(nn.Linear(4, 3)), 5, 2)


# ---------------------------------------------------------------------------------------------
# mixup, schedules
# ---------------------------------------------------------------------------------------------


def test_mixup_lambda_above_half_option():
    torch.manual_seed(0)
    lam = sample_mixup_lambda(2000, 0.4, gt_half=True)
    assert bool((lam >= 0.5).all()) and bool((lam <= 1).all())
    plain = sample_mixup_lambda(2000, 0.4)
    assert bool((plain < 0.5).any()) and bool((plain > 0.5).any())


def test_mixup_mixes_inputs_and_labels_alike():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xm, ym = mixup(x, y, torch.tensor([0.75, 0.75]), torch.tensor([1, 0]))
    torch.testing.assert_close(xm, torch.tensor([[0.25, 0.25], [0.75, 0.75]]))
    torch.testing.assert_close(ym, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


@pytest.mark.parametrize(
    "schedule, expected",
    [("none", [1.0, 1.0, 1.0, 1.0]), ("step", [1.0, 1.0, 0.1, 0.1]), ("cosine", [1.0, 0.8535534, 0.5, 0.1464466])],
)
def test_lr_schedules(schedule, expected):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, schedule, max_epochs=4, step_epochs=2, gamma=0.1)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    assert seen == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Loss masking
# ---------------------------------------------------------------------------------------------


def test_loss_mask_drops_items_at_or_above_alpha_times_the_max():
    losses = torch.tensor([1.0, 0.5, 0.79, 0.8, 0.9, 0.1])
    keep = loss_mask(losses, 0.8)
    assert keep.tolist() == [False, True, True, False, False, True]
    verified = torch.tensor([True, False, False, False, True, False])
    assert loss_mask(losses, 0.8, verified).tolist() == [True, True, True, False, True, True]
    assert masked_mean(losses, keep).item() == pytest.approx((0.5 + 0.79 + 0.1) / 3)


def test_masked_mean_of_nothing_is_zero():
    losses = torch.tensor([2.0, 2.0], requires_grad=True)
    keep = loss_mask(losses, 1.0)  # equal losses: every item is at the max
    assert not keep.any()
    out = masked_mean(losses, keep)
    out.backward()
    assert out.item() == 0.0 and losses.grad is not None and not losses.grad.any()


def test_verified_flags_are_used_and_checked(tiny_data):
    n = len(tiny_data.x)
    data = TrialData(
        tiny_data.x,
        tiny_data.y,
        tiny_data.train_idx,
        tiny_data.val_idx,
        tiny_data.class_names,
        verified=np.arange(n) % 2 == 0,
    )
    result = fit({"family": "fc1", "loss_mask_alpha": 0.5, "batch_size": 16}, data, max_epochs=1)
    assert math.isfinite(result.best["train_loss"])
    data.verified = np.ones(n - 1, dtype=bool)
    with pytest.raises(InputError, match="verified must hold one bool per clip"):
        fit({"family": "fc1", "loss_mask_alpha": 0.5}, data, max_epochs=1)


# ---------------------------------------------------------------------------------------------
# Class-balanced batches, positives
# ---------------------------------------------------------------------------------------------


def test_balanced_sampler_covers_rare_classes():
    y = torch.zeros(1000, 4, dtype=torch.bool)
    y[:, 0] = True  # every clip
    y[:500, 1] = True
    y[7, 2] = True  # one clip
    y[900, 3] = True  # one clip
    index = ClassIndex(y)
    rows = index.balanced(4000, torch.Generator().manual_seed(0))
    assert rows.shape == (4000,)
    assert bool(y[rows].any(dim=1).all())
    per_class = y[rows].sum(0).float() / 4000
    assert per_class[2] == pytest.approx(0.25, abs=0.04)  # sampled ~ as often as any class
    assert per_class[3] == pytest.approx(0.25, abs=0.04)


def test_class_index_picks_a_clip_with_the_class():
    y = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    index = ClassIndex(y)
    assert index.counts.tolist() == [2, 2]
    u = torch.tensor([0.0, 0.99, 0.0, 0.99])
    assert index.clips_of(torch.tensor([0, 0, 1, 1]), u).tolist() == [0, 2, 1, 2]


def test_random_positive_class_and_positive_mix():
    torch.manual_seed(0)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    cls, has = random_positive_class(y)
    assert has.tolist() == [True, False] and cls[0].item() in (0, 2)
    x = torch.tensor([[10.0], [20.0]])
    xm, ym = positive_mix(
        x,
        y,
        torch.tensor([[30.0], [0.0]]),
        torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
        torch.tensor([True, False]),
    )
    assert xm.tolist() == [[20.0], [20.0]]
    assert ym.tolist() == [[1.0, 0.5, 0.5], [0.0, 0.0, 0.0]]


# ---------------------------------------------------------------------------------------------
# Shift augmentation
# ---------------------------------------------------------------------------------------------


def test_shift_clamps_to_byte_range():
    x = torch.tensor([[[0, 5, 250, 255]], [[0, 5, 250, 255]]], dtype=torch.uint8)
    out = shift_clamp(x, torch.tensor([10, -10]).view(2, 1, 1))
    assert out.dtype == torch.uint8
    assert out.tolist() == [[[10, 15, 255, 255]], [[0, 0, 240, 245]]]
    xf = x.float()
    assert shift_clamp(xf, torch.tensor([300, -300]).view(2, 1, 1)).tolist() == [[[255.0] * 4], [[0.0] * 4]]


# ---------------------------------------------------------------------------------------------
# Binary task
# ---------------------------------------------------------------------------------------------


def test_binary_task_reports_f1(tiny_data):
    seen: list[dict[str, float]] = []
    result = fit(
        {"family": "fc1", "target_class": "c3", "lr": 1e-2, "batch_size": 16},
        tiny_data,
        max_epochs=3,
        on_epoch=lambda m, improved, model: seen.append(m),
    )
    assert all("val_f1" in m and "best_val_f1" in m for m in seen)
    assert all(0.0 <= m["val_f1"] <= 1.0 for m in seen)
    assert result.best["val_mAUC"] > 0.7  # one learnable class against the rest


def test_target_class_resolution():
    names = ("Speech", "Music", "Male speech, man speaking")
    assert resolve_target_class("Music", names) == 1
    assert resolve_target_class("speech", names) == 0
    with pytest.raises(InputError, match="unknown target_class 'Speach'; close matches: 'Speech'"):
        resolve_target_class("Speach", names)
    with pytest.raises(InputError, match="needs class names"):
        resolve_target_class("Speech", ())


def test_unknown_target_class_in_fit(tiny_data):
    with pytest.raises(InputError, match="unknown target_class 'c9'"):
        fit({"family": "fc1", "target_class": "c9"}, tiny_data, max_epochs=1)


def test_mlflow_none_reads_as_multilabel():
    assert resolve_config({"family": "fc1", "target_class": "None"})["target_class"] is None


# ---------------------------------------------------------------------------------------------
# Bad values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("output_heads", 0, r"output_heads must be an integer in \[1, 64\], got 0"),
        ("output_heads", 2.5, r"output_heads must be an integer"),
        ("output_heads", True, r"output_heads must be an integer"),
        ("lr_schedule", "linear", r"unknown lr_schedule 'linear'; choose from: none, step, cosine"),
        ("lr_step_epochs", 0, r"lr_step_epochs must be an integer in \[1, "),
        ("lr_gamma", 0.0, r"lr_gamma must be a number in \(0, 1\], got 0.0"),
        ("lr_gamma", 1.5, r"lr_gamma must be a number in \(0, 1\]"),
        ("mixup_alpha", -0.1, r"mixup_alpha must be a finite number >= 0 \(0 = off\), got -0.1"),
        ("mixup_lambda_gt_half", "yes", r"mixup_lambda_gt_half must be true or false, got 'yes'"),
        ("loss_mask_alpha", 1.2, r"loss_mask_alpha must be a number in \[0, 1\], got 1.2"),
        ("balanced_batches", 1, r"balanced_batches must be true or false, got 1"),
        ("shift_augment", 300, r"shift_augment must be an integer in \[0, 255\], got 300"),
        ("shift_augment", -1, r"shift_augment must be an integer in \[0, 255\]"),
        ("positive_mix", 2.0, r"positive_mix must be a number in \[0, 1\], got 2.0"),
        ("ema_decay", 1.0, r"ema_decay must be a number in \[0, 0.99999\], got 1.0"),
        ("target_class", 3, r"target_class must be a class name"),
        ("optimizer", "adamx", r"unknown optimizer 'adamx'; choose from: adam, adamw"),
    ],
)
def test_bad_values_raise_input_error(key, value, message):
    with pytest.raises(InputError, match=message):
        resolve_config({"family": "fc2", key: value})


def test_ema_validates_and_keeps_the_averaged_weights(tiny_data):
    """With ema_decay, what is validated, kept and handed to on_epoch (trial checkpoints) is the
    moving average of the weights, not the last ones."""
    seen = {}

    def on_epoch(metrics, improved, model):
        seen["model"] = model

    config = {**SMALL["fc2"], "batch_size": 16, "lr": 0.01}
    plain = fit(config, tiny_data, max_epochs=1)  # same seed: same start, same batches
    ema = fit({**config, "ema_decay": 0.99}, tiny_data, max_epochs=1, on_epoch=on_epoch)
    assert set(ema.best_state) == set(plain.best_state)
    key = next(k for k in plain.best_state if k.endswith("weight"))
    assert not torch.allclose(plain.best_state[key], ema.best_state[key])
    torch.testing.assert_close(seen["model"].state_dict()[key].cpu(), ema.best_state[key])


def test_swa_validates_the_mean_of_the_last_epochs_weights(tiny_data):
    """swa_last 0.5 of 4 epochs: epochs 1-2 validate the weights as trained, epoch 3 the weights
    of epoch 3, epoch 4 the mean of epochs 3 and 4; training itself is unchanged."""

    def states(extra):
        seen = []
        fit({**config, **extra}, tiny_data, max_epochs=4, on_epoch=lambda m, i, model: seen.append(weights(model)))
        return seen

    def weights(model):
        return {k: v.detach().clone() for k, v in model.state_dict().items() if k.endswith("weight")}

    config = {**SMALL["fc2"], "batch_size": 16, "lr": 0.01}
    plain, swa = states({}), states({"swa_last": 0.5})
    for key in plain[0]:
        for epoch in (0, 1, 2):
            torch.testing.assert_close(swa[epoch][key], plain[epoch][key])
        torch.testing.assert_close(swa[3][key], (plain[2][key] + plain[3][key]) / 2)
        assert not torch.allclose(swa[3][key], plain[3][key])


# ---------------------------------------------------------------------------------------------
# One batches protocol: the data kind picks its batches, fit does not branch on it
# ---------------------------------------------------------------------------------------------


def test_a_new_data_kind_is_one_batches_class(tiny_data, monkeypatch):
    from dataclasses import dataclass

    from tagtune.trainables import loop
    from tagtune.trainables.batches import EmbeddingBatches

    @dataclass(frozen=True, eq=False)
    class FlippedClips:
        """Embeddings stored upside down (255 - x): a kind of its own."""

        flipped: np.ndarray
        kind = "flipped"

        @property
        def n_clips(self) -> int:
            return len(self.flipped)

        @property
        def frame_shape(self) -> tuple[int, int]:
            return self.flipped.shape[1], self.flipped.shape[2]

    made: list[int] = []

    class FlippedBatches(EmbeddingBatches):
        def __init__(self, cfg, data, y_task, device):
            plain = TrialData(255 - data.clips.flipped, data.y, data.train_idx, data.val_idx, data.class_names)
            super().__init__(cfg, plain, y_task, device)

        def make(self, idx):
            made.append(len(idx))
            return super().make(idx)

    monkeypatch.setitem(loop.BATCHES, "flipped", FlippedBatches)
    flipped = TrialData(
        clips=FlippedClips(255 - tiny_data.x),
        y=tiny_data.y,
        train_idx=tiny_data.train_idx,
        val_idx=tiny_data.val_idx,
        class_names=tiny_data.class_names,
    )
    config = {"family": "fc1", "batch_size": 16}
    got = fit(config, flipped, max_epochs=2, device="cpu")
    want = fit(config, tiny_data, max_epochs=2, device="cpu")
    assert made == [16] * 4 + [8] + [16] * 4 + [8]
    for a, b in zip(got.history, want.history, strict=False):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == {
            k: v for k, v in b.items() if k != "epoch_seconds"
        }


def test_the_epoch_order_is_shared_by_every_kind():
    from tagtune.trainables.audio.batches import AudioBatches
    from tagtune.trainables.batches import EmbeddingBatches, TrainBatches

    for kind in (EmbeddingBatches, AudioBatches):
        assert issubclass(kind, TrainBatches) and kind.order is TrainBatches.order
