"""train_proxy / evaluate: learning, determinism, divergence, schedule and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from proxies import (
    DatasetInfo,
    EpochStats,
    TrainConfig,
    TrainResult,
    binomial_se,
    evaluate,
    lr_factor,
    make_loader,
    run_seed,
    summarize,
    train_proxy,
)
from proxies.train import _param_groups

MIN_ACCURACY = 0.6  # tiny_cnn reaches ~0.83-0.86 over seeds 0..2 with the default config


@pytest.fixture(scope="module")
def trained(digits: DatasetInfo, tiny_cnn) -> tuple[TrainResult, list[EpochStats]]:
    calls: list[EpochStats] = []
    result = train_proxy(tiny_cnn(seed=0), digits, TrainConfig(seed=0), on_epoch=calls.append)
    return result, calls


def test_tiny_model_learns(trained, digits: DatasetInfo):
    result, _ = trained
    assert result.accuracy > MIN_ACCURACY
    assert result.val_loss < 1.8 < math.log(10)  # chance-level loss is ln 10 ~ 2.30
    assert not result.diverged and result.failure is None
    assert result.epochs == 3 and result.steps == 3 * (digits.num_train // 64)
    assert result.train_seconds > 0 and result.eval_seconds > 0 and result.images_per_second > 0


def test_accuracy_comes_with_its_standard_error_and_a_test_accuracy(trained, digits):
    result, _ = trained
    assert result.num_val == digits.num_val and result.num_test == digits.num_test
    p = result.accuracy
    assert result.accuracy_se == pytest.approx(math.sqrt(p * (1 - p) / digits.num_val))
    assert 0.01 < result.accuracy_se < 0.05  # ~0.02 on 359 images at ~85 %
    assert result.test_accuracy > MIN_ACCURACY and result.test_loss < math.log(10)
    assert result.test_accuracy != result.accuracy or result.test_loss != result.val_loss


def test_progress_and_loss_summaries(trained):
    result, calls = trained
    assert [(e.epoch, e.epochs) for e in calls] == [(1, 3), (2, 3), (3, 3)]
    assert list(result.curve) == calls
    losses = [e.train_loss for e in calls]
    assert losses[0] > losses[-1]  # the training loss goes down
    assert all(0 <= e.train_accuracy <= 1 and e.seconds > 0 for e in calls)
    assert calls[-1].train_accuracy > calls[0].train_accuracy
    assert all(e.val_accuracy is None for e in calls)  # not asked for: no per-epoch evals
    assert result.final_train_loss == pytest.approx(losses[-1])
    assert result.train_loss_sum == pytest.approx(sum(losses))


def test_per_epoch_validation_when_asked(digits: DatasetInfo, tiny_cnn):
    calls: list[EpochStats] = []
    result = train_proxy(tiny_cnn(seed=0), digits,
                         TrainConfig(epochs=2, eval_every_epoch=True, evaluate_test=False),
                         on_epoch=calls.append)
    assert all(0 <= e.val_accuracy <= 1 and e.val_loss > 0 for e in calls)
    assert result.accuracy == calls[-1].val_accuracy
    assert result.test_accuracy is None and result.num_test == 0


def test_mid_epoch_checks_validate_without_changing_the_run(trained, digits: DatasetInfo,
                                                            tiny_cnn):
    calls: list[EpochStats] = []
    result = train_proxy(tiny_cnn(seed=0), digits,
                         TrainConfig(seed=0, eval_at=(0.25, 1, 1.5, 3)),
                         on_epoch=calls.append)
    assert [e.epoch for e in calls] == [0.25, 1, 1.5, 2, 3], "in training order"
    assert [e.epoch for e in result.checks] == [0.25, 1.5]
    assert list(result.curve) == [e for e in calls if e.epoch == int(e.epoch)]
    # a whole epoch in eval_at is validated at its end, the others are not; the last one's
    # validation is the result's (validated once, not again after the run)
    assert [e.val_accuracy is not None for e in result.curve] == [True, False, True]
    assert (result.curve[-1].val_accuracy, result.curve[-1].val_loss) == (
        result.accuracy, result.val_loss)
    assert all(0 <= e.val_accuracy <= 1 and 0 < e.val_loss for e in result.checks)
    assert all(e.seconds > 0 and math.isfinite(e.train_loss) for e in result.checks)
    # a check sees the epoch so far: a quarter in, fewer images than the whole first epoch
    assert result.checks[0].seconds < result.curve[0].seconds
    assert result.epochs == 3 and result.steps == trained[0].steps, "checks are not epochs"
    first = trained[0]  # the same run without checks: validating mid-epoch changes nothing
    assert (result.accuracy, result.val_loss, result.train_loss_sum) == (
        first.accuracy, first.val_loss, first.train_loss_sum)


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


def test_divergence_stops_training_and_says_why(digits: DatasetInfo, tiny_cnn):
    seen = []
    result = train_proxy(_BlowsUp(tiny_cnn(), after=20), digits, TrainConfig(epochs=3),
                         on_epoch=lambda e: seen.append(e.train_loss))
    assert result.diverged
    assert result.failure.startswith("training diverged: non-finite loss in epoch 2"), \
        result.failure
    assert result.epochs == 2 and len(seen) == 2  # 16 steps per epoch: NaN inside epoch 2
    assert seen[-1] == math.inf
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
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
    ({"warmup_epochs": 5.0}, r"warmup_epochs must be in \[0, epochs=3\]"),
    ({"grad_clip": 0.0}, "grad_clip must be > 0 or None"),
    ({"threads": 0}, "threads must be an int >= 1 or None"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"seed": -1}, "seed must be an int >= 0"),
    ({"eval_at": (0.0,)}, "eval_at points must be epochs in"),
    ({"eval_at": (3.5,)}, r"eval_at points must be epochs in \(0, 3\], got 3.5"),
    ({"eval_at": (True,)}, "eval_at points must be epochs in"),
    ({"eval_at": (float("nan"),)}, "eval_at points must be epochs in"),
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


# ---------------------------------------------------------------------------- weight decay


class _Scaled(nn.Module):
    """A conv, a norm and UFO-style per-head scales of shape (heads, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.gamma = nn.Parameter(torch.ones(2, 1, 1))
        self.head = nn.Linear(4, 10)


def test_weight_decay_only_on_conv_and_linear_weights():
    model = _Scaled()
    decayed, free = _param_groups(model, 0.05)
    assert decayed["weight_decay"] == 0.05 and free["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model.conv.weight), id(model.head.weight)}
    assert id(model.gamma) in {id(p) for p in free["params"]}  # ndim 3, yet not decayed


def test_ufo_gamma_and_scales_are_not_decayed():
    from nas.models.arch import MetaFormerSpec, StageSpec
    from nas.models.model import build_model

    spec = MetaFormerSpec(
        stages=tuple(StageSpec(depth=1, width=w, mixer=m, mixer_args=(("head_dim", 8),)
                               if m == "ufo" else (), layer_scale=1e-5, res_scale=1.0)
                     for w, m in ((8, "pooling"), (16, "pooling"), (32, "ufo"), (48, "ufo"))),
        num_classes=10, img_size=32, stem_stride=2)
    model = build_model(spec)
    decayed, _ = _param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = sorted(names[id(p)] for p in decayed["params"])
    assert any(n.endswith("gamma") for n in names.values())
    assert not [n for n in decayed_names if "gamma" in n or "norm" in n or "scale" in n
                or n.endswith(".bias")], decayed_names
    assert all(n.endswith("weight") for n in decayed_names)


# ---------------------------------------------------------------------------- seeds, repeats


def test_run_seeds_are_distinct_and_repeat_zero_is_the_seed():
    assert run_seed(7, 0) == 7
    seeds = {run_seed(s, r) for s in range(20) for r in range(5)}
    assert len(seeds) == 100


def test_summarize_repeats_mean_and_standard_error(digits: DatasetInfo, tiny_cnn):
    results = [train_proxy(tiny_cnn(seed=run_seed(0, r)), digits,
                           TrainConfig(epochs=1, seed=run_seed(0, r))) for r in range(3)]
    s = summarize(results)
    accs = [r.accuracy for r in results]
    assert s.repeats == 3 and s.accuracies == tuple(accs)
    assert s.accuracy == pytest.approx(sum(accs) / 3)
    std = float(torch.tensor(accs, dtype=torch.float64).std())
    assert s.accuracy_std == pytest.approx(std)
    assert s.binomial_se == pytest.approx(binomial_se(s.accuracy, digits.num_val))
    assert s.accuracy_se == pytest.approx(math.sqrt(s.binomial_se ** 2 + std ** 2 / 3))
    assert s.test_accuracy == pytest.approx(sum(r.test_accuracy for r in results) / 3)
    assert len(set(accs)) > 1 or len({r.train_loss_sum for r in results}) == 3
    single = summarize(results[:1])
    assert single.accuracy_std is None and single.accuracy_se == single.binomial_se


# ---------------------------------------------------------------------------- GPU-path options


def test_channels_last_training_on_cpu(digits: DatasetInfo, tiny_cnn):
    model = tiny_cnn(seed=0)
    result = train_proxy(model, digits, TrainConfig(epochs=1, channels_last=True))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = train_proxy(tiny_cnn(seed=0), digits, TrainConfig(epochs=1))
    assert result.accuracy == pytest.approx(plain.accuracy, abs=0.03)  # same math, other layout


@pytest.mark.slow
def test_compiled_model_trains(digits: DatasetInfo, tiny_cnn):
    result = train_proxy(tiny_cnn(seed=0), digits, TrainConfig(epochs=1, compile=True))
    assert result.failure is None and result.accuracy > 0.3


def test_binomial_se_is_never_zero_at_a_perfect_or_null_score() -> None:
    # the plug-in sqrt(p (1 - p) / n) called 121 of 121 right an exact measurement, so every
    # such trial counted as certain and a one-image difference as significant
    assert binomial_se(0.75, 2000) == pytest.approx(math.sqrt(0.75 * 0.25 / 2000))
    for p in (0.0, 1.0):
        se = binomial_se(p, 121)
        assert se == pytest.approx(math.sqrt((0.5 / 121) * (1 - 0.5 / 121) / 121)) and se > 0.005
    assert binomial_se(1.0, 2000) < binomial_se(1.0, 121) < binomial_se(120 / 121, 121)
