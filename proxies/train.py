"""A small airbench-style proxy trainer: AdamW, warm-up + cosine, label smoothing, FFCV data."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from proxies.datasets import DatasetInfo
from proxies.loader_cache import shared_loader

__all__ = ["TrainConfig", "TrainResult", "train_proxy", "evaluate", "lr_factor"]

DIVERGENCE_CHECK_EVERY = 8  # steps between host syncs that look for a non-finite loss


# ============================================================================ configuration

@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one proxy training run."""

    epochs: int = 3  # full passes over the train split
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW decoupled decay, only on params with ndim > 1
    label_smoothing: float = 0.1  # cross-entropy label smoothing, in [0, 1)
    warmup_epochs: float = 0.5  # epochs of linear warm-up; cosine to 0 ends with the last step
    grad_clip: float | None = 1.0  # max global grad L2 norm; None disables clipping
    seed: int = 0  # torch seed (dropout, drop-path, ...) and data-order seed
    device: str = "cpu"  # torch device the model and batches live on
    amp_bf16: bool = False  # bf16 autocast; only takes effect on CUDA
    threads: int | None = None  # torch.set_num_threads (and FFCV workers) if given

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}], "
                             f"got {self.warmup_epochs!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an int >= 1 or None, got {self.threads!r}")


@dataclass(frozen=True)
class TrainResult:
    """What one proxy training run measured. Non-finite losses are reported as inf."""

    accuracy: float  # top-1 on the validation split, in [0, 1]
    val_loss: float  # mean cross-entropy (no smoothing) on the validation split, nats
    final_train_loss: float  # mean training loss over the last epoch, nats
    train_loss_sum: float  # sum over epochs of the mean epoch loss (SoTL), nats
    epochs: int  # epochs run (fewer than configured if training diverged)
    steps: int  # optimizer steps taken
    train_seconds: float  # wall time of the training loop only, seconds
    eval_seconds: float  # wall time of the final evaluation, seconds
    images_per_second: float  # training throughput, images / second
    diverged: bool  # a non-finite loss was seen; training stopped early


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


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and kernels only; norms, biases and scales (ndim <= 1) go free."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
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
                progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train `model` on `dataset`'s train split per `cfg`, then evaluate on its val split.

    The model is moved to `cfg.device` and trained in place. `torch.manual_seed(cfg.seed)` is
    applied first; weight init happens when the caller builds the model, so seed before that
    too (e.g. `torch.manual_seed(cfg.seed); model = build()`) for fully repeatable runs.
    `progress(epoch, epochs, epoch_loss)` is called after each epoch, epoch counting from 1.
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

    # Loaders are reused across calls in this process (FFCV compiles each new one with numba).
    train_loader = shared_loader(dataset, "train", batch_size=cfg.batch_size, shuffle=True,
                                 seed=cfg.seed, device=device, drop_last=True,
                                 num_workers=workers)
    val_loader = shared_loader(dataset, "val", batch_size=cfg.batch_size, shuffle=False,
                               device=device, num_workers=workers)
    steps_per_epoch = len(train_loader)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(total_steps, round(cfg.warmup_epochs * steps_per_epoch))

    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, warmup_steps=warmup_steps, total_steps=total_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    # ---------------------------------------------------------------- train loop
    epoch_losses: list[float] = []
    steps = 0
    diverged = False
    model.train()
    _sync(device)
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        loss_sum = torch.zeros((), device=device)
        epoch_steps = 0
        batches = iter(train_loader)
        try:
            for images, labels in batches:
                with _autocast(device, cfg.amp_bf16):
                    logits = model(images)
                if steps == 0:
                    _check_logits(logits, len(images), dataset)
                loss = criterion(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach()
                epoch_steps += 1
                steps += 1
                if epoch_steps % DIVERGENCE_CHECK_EVERY == 0 and not loss_sum.isfinite():
                    diverged = True
                    break
        finally:
            batches.close()  # stops FFCV's prefetch thread, also on break or error
        epoch_loss = loss_sum.item() / max(1, epoch_steps)
        diverged = diverged or not math.isfinite(epoch_loss)
        epoch_losses.append(epoch_loss if not diverged else math.inf)
        if progress is not None:
            progress(epoch + 1, cfg.epochs, epoch_losses[-1])
        if diverged:
            break
    _sync(device)
    train_seconds = time.perf_counter() - start

    # ---------------------------------------------------------------- evaluation
    start = time.perf_counter()
    accuracy, val_loss = evaluate(model, val_loader, device, amp_bf16=cfg.amp_bf16)
    eval_seconds = time.perf_counter() - start

    return TrainResult(
        accuracy=accuracy,
        val_loss=val_loss if math.isfinite(val_loss) else math.inf,
        final_train_loss=epoch_losses[-1],
        train_loss_sum=sum(epoch_losses),
        epochs=len(epoch_losses),
        steps=steps,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        images_per_second=steps * cfg.batch_size / max(train_seconds, 1e-9),
        diverged=diverged,
    )


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
