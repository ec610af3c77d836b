"""train_proxy / evaluate: learning, determinism, divergence, schedule and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from proxies import (
    DatasetInfo,
    TrainConfig,
    TrainResult,
    evaluate,
    lr_factor,
    make_loader,
    train_proxy,
)

MIN_ACCURACY = 0.6  # tiny_cnn reaches ~0.83-0.86 over seeds 0..2 with the default config


@pytest.fixture(scope="module")
def trained(digits: DatasetInfo, tiny_cnn) -> tuple[TrainResult, list[tuple[int, int, float]]]:
    calls: list[tuple[int, int, float]] = []
    result = train_proxy(tiny_cnn(seed=0), digits, TrainConfig(seed=0),
                         progress=lambda *args: calls.append(args))
    return result, calls


def test_tiny_model_learns(trained, digits: DatasetInfo):
    result, _ = trained
    assert result.accuracy > MIN_ACCURACY
    assert result.val_loss < 1.8 < math.log(10)  # chance-level loss is ln 10 ~ 2.30
    assert not result.diverged
    assert result.epochs == 3 and result.steps == 3 * (digits.num_train // 64)
    assert result.train_seconds > 0 and result.eval_seconds > 0 and result.images_per_second > 0


def test_progress_and_loss_summaries(trained):
    result, calls = trained
    assert [(epoch, total) for epoch, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    losses = [loss for _, _, loss in calls]
    assert losses[0] > losses[-1]  # the training loss goes down
    assert result.final_train_loss == pytest.approx(losses[-1])
    assert result.train_loss_sum == pytest.approx(sum(losses))


def test_same_seed_same_result(trained, digits: DatasetInfo, tiny_cnn):
    again = train_proxy(tiny_cnn(seed=0), digits, TrainConfig(seed=0))
    first, _ = trained
    assert again.accuracy == first.accuracy
    assert again.val_loss == first.val_loss
    assert again.train_loss_sum == first.train_loss_sum


def test_other_seed_other_run(trained, digits: DatasetInfo, tiny_cnn):
    other = train_proxy(tiny_cnn(seed=1), digits, TrainConfig(seed=1, epochs=1))
    assert other.train_loss_sum != trained[0].train_loss_sum


def test_evaluate_matches_result(digits: DatasetInfo, tiny_cnn):
    model = tiny_cnn(seed=0)
    result = train_proxy(model, digits, TrainConfig(epochs=1))
    loader = make_loader(digits, "val", batch_size=50, shuffle=False)
    accuracy, loss = evaluate(model, loader, "cpu")
    assert accuracy == pytest.approx(result.accuracy)
    assert loss == pytest.approx(result.val_loss, rel=1e-5)


def test_wrong_class_count_is_a_value_error(digits: DatasetInfo, tiny_cnn):
    with pytest.raises(ValueError, match=r"logits of shape \(64, 7\), expected \(64, 10\).*"
                                         r"num_classes=10"):
        train_proxy(tiny_cnn(num_classes=7), digits, TrainConfig(epochs=1))


class _BlowsUp(nn.Module):
    """tiny_cnn whose logits turn NaN from the `after`-th training forward on."""

    def __init__(self, net: nn.Module, after: int) -> None:
        super().__init__()
        self.net, self.after, self.calls = net, after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def test_divergence_stops_training_and_still_evaluates(digits: DatasetInfo, tiny_cnn):
    seen = []
    result = train_proxy(_BlowsUp(tiny_cnn(), after=30), digits, TrainConfig(epochs=3),
                         progress=lambda e, n, loss: seen.append(loss))
    assert result.diverged
    assert result.epochs == 2 and len(seen) == 2  # 22 steps per epoch: NaN inside epoch 2
    assert result.steps < 2 * (digits.num_train // 64)
    assert result.final_train_loss == math.inf and result.train_loss_sum == math.inf
    assert 0.0 <= result.accuracy <= 1.0


def test_lr_schedule_shape():
    warmup, total = 10, 100
    factors = [lr_factor(s, warmup, total) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[warmup - 1] == pytest.approx(1.0)
    assert factors[warmup] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:]))
    assert 0 < factors[-1] < 1e-3 and lr_factor(total, warmup, total) == pytest.approx(0.0)
    assert lr_factor(0, 0, 5) == 1.0  # no warm-up


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be an int >= 1"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
    ({"warmup_epochs": 5.0}, r"warmup_epochs must be in \[0, epochs=3\]"),
    ({"grad_clip": 0.0}, "grad_clip must be > 0 or None"),
    ({"threads": 0}, "threads must be an int >= 1 or None"),
])
def test_bad_config_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unusable_device_or_batch_is_a_value_error(digits: DatasetInfo, tiny_cnn):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train_proxy(tiny_cnn(), digits, TrainConfig(device="cuda"))
    with pytest.raises(ValueError, match="exceeds the .* training examples"):
        train_proxy(tiny_cnn(), digits, TrainConfig(batch_size=digits.num_train + 1))
