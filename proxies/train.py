"""A small airbench-style proxy trainer: AdamW, warm-up + cosine, label smoothing, FFCV data."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from proxies.datasets import DatasetInfo
from proxies.loader import data_seed
from proxies.loader_cache import shared_loader

__all__ = ["TrainConfig", "EpochStats", "TrainResult", "train_proxy", "evaluate", "lr_factor",
           "binomial_se"]

DIVERGENCE_CHECK_EVERY = 8  # steps between host syncs that look for a non-finite loss


# ============================================================================ configuration

@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one proxy training run."""

    epochs: int = 3  # full passes over the train split
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW decoupled decay, on conv/linear weights only
    label_smoothing: float = 0.1  # cross-entropy label smoothing, in [0, 1)
    warmup_epochs: float = 0.5  # epochs of linear warm-up; cosine to 0 ends with the last step
    grad_clip: float | None = 1.0  # max global grad L2 norm; None disables clipping
    seed: int = 0  # torch seed (dropout, drop-path, ...); the data order uses data_seed(seed)
    device: str = "cpu"  # torch device the model and batches live on
    amp_bf16: bool = False  # bf16 autocast; only takes effect on CUDA
    channels_last: bool = False  # model and batches in channels-last memory format
    compile: bool = False  # torch.compile the model before training
    cpu_kernels: bool = True  # on CPU (not compiled): channels-last, and proxies.cpu_kernels'
    #                           depthwise-conv backward and fused StarReLU (same results up to
    #                           float rounding; ~12% less training time on hybrid_conv_attn)
    eval_every_epoch: bool = False  # validate after every epoch (curves, early stopping)
    eval_at: tuple[float, ...] = ()  # also validate at these points, in epochs: a fraction
    #                                  mid-epoch ((0.25,): after a quarter of epoch 1), a whole
    #                                  epoch at its end (multi-fidelity rungs, without
    #                                  validating every epoch; `epochs` puts the final
    #                                  validation in the curve)
    evaluate_test: bool = True  # also measure the test split at the end (reported, not used)
    threads: int | None = None  # torch.set_num_threads (and FFCV workers) if given
    checkpoint: str | None = None  # a file: the run's state is saved there after each epoch
    #                                (atomically), and a run that finds one saved by the same
    #                                model, data and settings resumes after its epoch; the caller
    #                                deletes it when it no longer needs it

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}], "
                             f"got {self.warmup_epochs!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an int >= 1 or None, got {self.threads!r}")
        for point in self.eval_at:
            if not (isinstance(point, (int, float)) and not isinstance(point, bool)
                    and math.isfinite(point) and 0 < point <= self.epochs):
                raise ValueError(f"eval_at points must be epochs in (0, {self.epochs}], "
                                 f"got {point!r}")


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of training measured (handed to `on_epoch` as soon as it ends).

    A mid-epoch check (``TrainConfig.eval_at``) is one too, with a fractional ``epoch`` (epochs
    trained so far, e.g. 0.25) and the epoch's figures up to that step.
    """

    epoch: float  # 1-based whole epochs (int); epochs trained so far for a mid-epoch check
    epochs: int  # epochs configured
    train_loss: float  # mean training loss (with label smoothing) over the epoch; inf if diverged
    train_accuracy: float  # top-1 on the training batches as they were trained, in [0, 1]
    seconds: float  # wall time of the epoch's training, seconds
    val_accuracy: float | None = None  # after the epoch, when validated there (else None)
    val_loss: float | None = None  # mean cross-entropy on val after the epoch, nats


@dataclass(frozen=True)
class TrainResult:
    """What one proxy training run measured. Non-finite losses are reported as inf."""

    accuracy: float  # top-1 on the validation split (selects architectures), in [0, 1]
    accuracy_se: float  # binomial standard error of `accuracy`: sqrt(p (1 - p) / num_val)
    val_loss: float  # mean cross-entropy (no smoothing) on the validation split, nats
    test_accuracy: float | None  # top-1 on the test split (reported only); None if not run
    test_loss: float | None  # mean cross-entropy on the test split, nats
    num_val: int  # validation examples
    num_test: int  # test examples (0 when the test split was not evaluated)
    final_train_loss: float  # mean training loss over the last epoch, nats
    train_loss_sum: float  # sum over epochs of the mean epoch loss (SoTL), nats
    epochs: int  # epochs run (fewer than configured if training diverged)
    steps: int  # optimizer steps taken
    train_seconds: float  # wall time of the training loop only (per-epoch evals excluded), s
    eval_seconds: float  # wall time of all evaluations (per-epoch and final), seconds
    images_per_second: float  # training throughput, images / second
    diverged: bool  # a non-finite loss was seen; training stopped early
    failure: str | None  # why the run cannot be trusted ("training diverged: ..."), or None
    curve: tuple[EpochStats, ...]  # one entry per epoch run
    checks: tuple[EpochStats, ...] = ()  # the mid-epoch checks (TrainConfig.eval_at) run
    resumed_epochs: int = 0  # epochs restored from `TrainConfig.checkpoint` (0: from scratch)


# ============================================================================ schedule

def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based).

    Linear warm-up over `warmup_steps` reaching 1, then cosine decay that would hit 0 at step
    `total_steps`, i.e. right after the last step.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


DECAYED_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # their `weight` is decayed


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights only.

    Norm weights and biases, every bias, LayerScale/ResScale, StarReLU's scale and bias and
    per-head scales such as UFO's gamma (shape (heads, 1, 1)) are not decayed: the rule is the
    module that owns the parameter, not its number of dimensions.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    decayed = {id(m.weight) for m in model.modules()
               if isinstance(m, DECAYED_MODULES) and isinstance(m.weight, nn.Parameter)}
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


# ============================================================================ evaluation

@torch.no_grad()
def evaluate(model: nn.Module, loader, device: str | torch.device, *,
             amp_bf16: bool = False) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of `model` over every batch of `loader`."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    try:
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with _autocast(device, amp_bf16):
                logits = model(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += labels.numel()
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluation loader yielded no examples")
    return correct.item() / seen, loss_sum.item() / seen


# ============================================================================ training

def train_proxy(model: nn.Module, dataset: DatasetInfo, cfg: TrainConfig, *,
                on_epoch: Callable[[EpochStats], None] | None = None) -> TrainResult:
    """Train `model` on `dataset`'s train split per `cfg`; evaluate on val (and test).

    The model is moved to `cfg.device` and trained in place. `torch.manual_seed(cfg.seed)` is
    applied first; weight init happens when the caller builds the model, so seed before that
    too (e.g. `torch.manual_seed(cfg.seed); model = build()`) for fully repeatable runs. The
    data order comes from `data_seed(cfg.seed)`, so runs with different seeds share no epoch
    order. `on_epoch(stats)` is called after each epoch and after each mid-epoch check of
    `cfg.eval_at` (a fractional `stats.epoch`). A non-finite loss stops training:
    the result then has `diverged` set and `failure` says where; it is still evaluated.
    FFCV sets torch's thread count to its worker count, so both use `cfg.threads` (or the
    current torch thread count).
    """
    # ---------------------------------------------------------------- setup
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} requested but CUDA is not available; "
                         "use device='cpu'")
    if cfg.batch_size > dataset.num_train:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {dataset.num_train} "
                         f"training examples of {dataset.name!r}")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    workers = _loader_workers()
    torch.manual_seed(cfg.seed)
    model.to(device)
    cpu_kernels = cfg.cpu_kernels and device.type == "cpu" and not cfg.compile
    if cpu_kernels:
        from proxies.cpu_kernels import speed_up  # numba and timm: imported when used

        speed_up(model)  # channels-last too
    elif cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if cfg.compile else model

    # Loaders are reused across calls in this process (FFCV compiles each new one with numba).
    loader_args = dict(batch_size=cfg.batch_size, device=device, num_workers=workers,
                       channels_last=cfg.channels_last or cpu_kernels)
    train_loader = shared_loader(dataset, "train", shuffle=True, seed=data_seed(cfg.seed),
                                 drop_last=True, **loader_args)
    steps_per_epoch = len(train_loader)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(total_steps, round(cfg.warmup_epochs * steps_per_epoch))

    # fused: one kernel per step instead of ~10 small ops per tensor (7% of a CPU proxy step
    # went to the per-tensor loop); the same update up to float rounding
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  fused=device.type in ("cpu", "cuda"))
    clipped = [p for p in model.parameters() if p.requires_grad]  # not re-walked per step
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, warmup_steps=warmup_steps, total_steps=total_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def validate(split: str) -> tuple[float, float]:
        loader = shared_loader(dataset, split, shuffle=False, **loader_args)
        return evaluate(net, loader, device, amp_bf16=cfg.amp_bf16)

    # mid-epoch checks: step (1-based, counted over the run) -> the point in epochs it stands for
    check_at = {max(1, round(p * steps_per_epoch)): float(p) for p in cfg.eval_at
                if p != int(p)}
    eval_epochs = {int(p) for p in cfg.eval_at if p == int(p)}  # validated at their end

    # ---------------------------------------------------------------- train loop
    curve: list[EpochStats] = []
    checks: list[EpochStats] = []
    steps = 0
    failure = None
    train_seconds = eval_seconds = 0.0
    fingerprint = _fingerprint(model, dataset, cfg) if cfg.checkpoint else ""
    saved = _load_checkpoint(cfg.checkpoint, fingerprint) if cfg.checkpoint else None
    if saved is not None:  # resume after its epoch: same data order, weights and schedule
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        if device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        curve = [EpochStats(**e) for e in saved["curve"]]
        checks = [EpochStats(**e) for e in saved["checks"]]
        steps, train_seconds = saved["steps"], saved["train_seconds"]
        eval_seconds = saved["eval_seconds"]
        train_loader.next_epoch = len(curve)  # FFCV orders epoch e with its seed + e
        if on_epoch is not None:  # the caller sees the whole curve, as an unbroken run's
            for stats in sorted((*checks, *curve), key=lambda e: e.epoch):
                on_epoch(stats)
    resumed = len(curve)
    for epoch in range(resumed + 1, cfg.epochs + 1):
        net.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        epoch_steps = 0
        _sync(device)
        start = time.perf_counter()
        batches = iter(train_loader)
        try:
            for images, labels in batches:
                with _autocast(device, cfg.amp_bf16):
                    logits = net(images)
                if steps == 0:
                    _check_logits(logits, len(images), dataset)
                loss = criterion(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(clipped, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach()
                correct += (logits.detach().argmax(dim=1) == labels).sum()
                epoch_steps += 1
                steps += 1
                if epoch_steps % DIVERGENCE_CHECK_EVERY == 0 and not loss_sum.isfinite():
                    break
                if steps in check_at:
                    mean_loss = loss_sum.item() / epoch_steps
                    if not math.isfinite(mean_loss):
                        break
                    t_eval = time.perf_counter()
                    seconds = t_eval - start
                    val_acc, val_loss = validate("val")  # evaluate() restores train mode
                    eval_seconds += time.perf_counter() - t_eval
                    checks.append(EpochStats(check_at[steps], cfg.epochs, mean_loss,
                                             correct.item() / (epoch_steps * cfg.batch_size),
                                             seconds, val_acc, val_loss))
                    if on_epoch is not None:
                        on_epoch(checks[-1])
                    start += time.perf_counter() - t_eval  # the epoch's time excludes the check
        finally:
            batches.close()  # stops FFCV's prefetch thread, also on break or error
        epoch_loss = loss_sum.item() / max(1, epoch_steps)
        _sync(device)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        if not math.isfinite(epoch_loss):
            failure = (f"training diverged: non-finite loss in epoch {epoch} (by step "
                       f"{steps}, lr {cfg.lr:g})")
            epoch_loss = math.inf
        val_acc = val_loss = None
        if (cfg.eval_every_epoch or epoch in eval_epochs) and failure is None:
            start = time.perf_counter()
            val_acc, val_loss = validate("val")
            eval_seconds += time.perf_counter() - start
        curve.append(EpochStats(epoch, cfg.epochs, epoch_loss,
                                correct.item() / max(1, epoch_steps * cfg.batch_size),
                                seconds, val_acc, val_loss))
        if cfg.checkpoint and failure is None:
            _save_checkpoint(cfg.checkpoint, {
                "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "curve": [dataclasses.asdict(e) for e in curve],
                "checks": [dataclasses.asdict(e) for e in checks], "steps": steps,
                "train_seconds": train_seconds, "eval_seconds": eval_seconds})
        if on_epoch is not None:
            on_epoch(curve[-1])
        if failure is not None:
            break

    # ---------------------------------------------------------------- evaluation
    start = time.perf_counter()
    if curve[-1].val_accuracy is not None:
        accuracy, val_loss = curve[-1].val_accuracy, curve[-1].val_loss
    else:
        accuracy, val_loss = validate("val")
    test_acc = test_loss = None
    if cfg.evaluate_test:
        test_acc, test_loss = validate("test")
    eval_seconds += time.perf_counter() - start
    if not math.isfinite(val_loss) and failure is None:
        failure = "evaluation produced a non-finite loss (the model outputs NaN or inf)"

    losses = [e.train_loss for e in curve]
    return TrainResult(
        accuracy=accuracy,
        accuracy_se=binomial_se(accuracy, dataset.num_val),
        val_loss=val_loss if math.isfinite(val_loss) else math.inf,
        test_accuracy=test_acc,
        test_loss=None if test_loss is None else (test_loss if math.isfinite(test_loss)
                                                  else math.inf),
        num_val=dataset.num_val,
        num_test=dataset.num_test if cfg.evaluate_test else 0,
        final_train_loss=losses[-1],
        train_loss_sum=sum(losses),
        epochs=len(curve),
        steps=steps,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        images_per_second=steps * cfg.batch_size / max(train_seconds, 1e-9),
        diverged=failure is not None,
        failure=failure,
        curve=tuple(curve),
        checks=tuple(checks),
        resumed_epochs=resumed,
    )


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on `n` independent examples: sqrt(p (1 - p) / n),
    with p kept half an example from 0 and 1, where the plug-in estimate would claim an exact
    measurement (all 121 right gave 0; now 0.0058)."""
    n = max(n, 1)
    p = min(max(accuracy, 0.5 / n), 1.0 - 0.5 / n)
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


# ============================================================================ checkpoints

CHECKPOINT_FORMAT = 1  # bumped when the saved dict changes; another format is not resumed


def _fingerprint(model: nn.Module, dataset: DatasetInfo, cfg: TrainConfig) -> str:
    """What a checkpoint must match to be resumed: every setting that changes the result
    (not the file, nor the thread count), the data, and the model's parameter shapes."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("checkpoint", "threads")}
    shapes = [(name, list(t.shape)) for name, t in model.state_dict().items()]
    text = json.dumps([settings, dataset.name, dataset.fingerprint, dataset.resolution,
                       type(model).__name__, shapes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_checkpoint(path: str, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a reader sees the old file or the new one). A
    failure to write is a warning, not the run's failure: the run goes on without it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not save the training checkpoint {path}: {e}", stacklevel=3)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _load_checkpoint(path: str, fingerprint: str) -> dict | None:
    """The state saved at ``path`` if it is readable and was saved by the same model, data and
    settings; None otherwise (a warning says why, unless there is no file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except Exception as e:  # truncated, not a torch file, unreadable: train from scratch
        warnings.warn(f"ignoring the unreadable training checkpoint {path}: "
                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                      stacklevel=3)
        return None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT \
            or state.get("fingerprint") != fingerprint:
        warnings.warn(f"ignoring the training checkpoint {path}: it was saved by another "
                      "model, dataset or training setting", stacklevel=3)
        return None
    return state


# ============================================================================ helpers

def _check_logits(logits: torch.Tensor, batch: int, dataset: DatasetInfo) -> None:
    expected = (batch, dataset.num_classes)
    if tuple(logits.shape) != expected:
        raise ValueError(f"model returned logits of shape {tuple(logits.shape)}, expected "
                         f"{expected}: build it with num_classes={dataset.num_classes} for "
                         f"dataset {dataset.name!r}")


def _autocast(device: torch.device, amp_bf16: bool):
    if amp_bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loader_workers() -> int:
    """FFCV worker count matching torch's threads, within numba's thread limit."""
    import numba

    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
