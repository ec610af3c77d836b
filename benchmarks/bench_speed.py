"""Time the FFCV loader and `train_proxy` against a plain PyTorch DataLoader and a timm-style loop.

Two side-by-side measurements in one process, at the same torch thread count:

1. Loader: ``proxies.make_loader`` (FFCV: raw decode -> tensor -> float32 -> normalize) against a
   ``torch.utils.data.DataLoader`` over the same uint8 images (read once from the train .beton)
   with the same float32 normalization per image, at 0, 1 and 2 workers. Full shuffled epochs;
   one warm-up epoch, then the median images/s of ``--loader-epochs`` epochs.
2. Trainer: ``proxies.train_proxy`` against a straightforward timm-style loop (DataLoader, timm
   AdamW, ``CosineLRScheduler`` with warm-up, ``LabelSmoothingCrossEntropy``, grad clipping,
   validation after every epoch) on the same proxy model (same spec, same seeded weights), for
   the same epochs and batch size. Reports train images/s, wall seconds including evaluation,
   and the final val accuracy of both (they should learn alike, not identically: data order,
   weight-decay groups and the lr at each step differ slightly).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_speed.py                     # clutter, 3 models, 3 epochs
    .venv/bin/python benchmarks/bench_speed.py --epochs 5 --models 2 --batch-size 128
    .venv/bin/python benchmarks/bench_speed.py --threads 1 --skip-trainer
    .venv/bin/python benchmarks/bench_speed.py --quick               # smoke test (digits, tiny)

Run it on an otherwise idle machine: the numbers are wall-clock throughputs.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nas.models import analytic_cost, build_model
from nas.models.arch import ArchSpec
from proxies import (
    DatasetInfo,
    TrainConfig,
    data_seed,
    make_loader,
    prepare_dataset,
    shared_loader,
    train_proxy,
)
from search_spaces import load_space

SPACE = "hybrid_conv_attn"  # proxy models are drawn from this space
CANDIDATES_PER_MODEL = 4  # random draws per requested model; the N picked span their sizes


# ============================================================================ plain data path

def read_split(info: DatasetInfo, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, R, R, 3) uint8, labels (N,) int64) of a raw-stored split, in file order."""
    from ffcv.reader import Reader

    path, _ = info.split(split)
    reader = Reader(path)
    meta = reader.metadata
    image, label = (f"f{reader.field_names.index(n)}" for n in ("image", "label"))
    if info.stored_side is None or (meta[image]["mode"] != 1).any():  # 1: RGBImageField raw
        raise SystemExit(f"{info.name}: images are stored as JPEG; this benchmark needs raw ones")
    side = info.stored_side
    data = np.memmap(path, dtype=np.uint8, mode="r")
    ptrs = meta[image]["data_ptr"].astype(np.int64)
    images = np.stack([data[p:p + side * side * 3] for p in ptrs]).reshape(-1, side, side, 3)
    return images, meta[label].astype(np.int64)


class ImageDataset(Dataset):
    """uint8 HWC images -> normalized float32 CHW tensors, one at a time (torchvision style)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: DatasetInfo) -> None:
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels)
        self.mean = torch.tensor(info.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(info.std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i].permute(2, 0, 1).float()  # same ops as FFCV's pipeline
        return (image - self.mean) / self.std, self.labels[i]


def torch_loader(dataset: ImageDataset, *, batch_size: int, shuffle: bool, workers: int,
                 drop_last: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader as timm's create_loader makes it on CPU (persistent workers, no pinning)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=False,
                      generator=torch.Generator().manual_seed(seed))


# ============================================================================ loader benchmark

@dataclass(frozen=True)
class LoaderRow:
    batch_size: int
    loader: str  # "ffcv, 2 workers", "torch, 0 workers"
    images_per_second: float  # median over the timed epochs
    spread: float  # (max - min) / median of the per-epoch rates


def epoch_rates(loader: Iterable, num_images: int, epochs: int) -> list[float]:
    """Images/s of `epochs` full passes over `loader`, after one untimed warm-up pass."""
    rates = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        seen = sum(len(labels) for _, labels in loader)
        seconds = time.perf_counter() - start
        assert seen == num_images, (seen, num_images)
        if epoch:
            rates.append(seen / seconds)
    return rates


def bench_loaders(info: DatasetInfo, dataset: ImageDataset, batch_sizes: list[int],
                  torch_workers: list[int], threads: int, epochs: int) -> list[LoaderRow]:
    rows = []
    for batch_size in batch_sizes:
        runs: list[tuple[str, Callable[[], Iterable]]] = [
            (f"ffcv, {threads} workers",
             partial(make_loader, info, "train", batch_size=batch_size, shuffle=True,
                     num_workers=threads))]
        runs += [(f"torch, {w} workers",
                  partial(torch_loader, dataset, batch_size=batch_size, shuffle=True, workers=w))
                 for w in torch_workers]
        for name, make in runs:
            loader = make()
            torch.set_num_threads(threads)  # FFCV resets it to its worker count every epoch
            rates = epoch_rates(loader, len(dataset), epochs)
            median = statistics.median(rates)
            rows.append(LoaderRow(batch_size, name, median, (max(rates) - min(rates)) / median))
            print(f"  loader  batch {batch_size:>4}  {name:<18} {median:>10,.0f} img/s "
                  f"(+-{rows[-1].spread / 2:.0%})", flush=True)
            del loader  # stops persistent DataLoader workers before the next run
    return rows


# ============================================================================ timm-style trainer

@dataclass(frozen=True)
class TrainRow:
    model: str  # short description of the proxy model
    params_m: float  # millions of parameters
    macs_m: float  # millions of MACs per image
    trainer: str  # "train_proxy (ffcv)" or "timm-style (torch DataLoader)"
    images_per_second: float  # training loop only, evaluation excluded
    wall_seconds: float  # whole call: setup, training and every evaluation
    val_accuracy: float  # after the last epoch


def timm_style_train(model: nn.Module, train: ImageDataset, val: ImageDataset,
                     cfg: TrainConfig, workers: int) -> tuple[float, float]:
    """Train as a plain timm script would; (train images/s, final val accuracy)."""
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    torch.manual_seed(cfg.seed)
    train_loader = torch_loader(train, batch_size=cfg.batch_size, shuffle=True, workers=workers,
                                drop_last=True, seed=cfg.seed)
    val_loader = torch_loader(val, batch_size=cfg.batch_size, shuffle=False, workers=workers)
    steps_per_epoch = len(train_loader)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    optimizer = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps_per_epoch - warmup,
                                  warmup_t=warmup, warmup_prefix=True, t_in_epochs=False)
    criterion = LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)

    train_seconds, steps, accuracy = 0.0, 0, math.nan
    for _ in range(cfg.epochs):
        model.train()
        start = time.perf_counter()
        for images, labels in train_loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            steps += 1
            scheduler.step_update(steps)
        train_seconds += time.perf_counter() - start
        model.eval()
        correct = seen = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (model(images).argmax(dim=1) == labels).sum().item()
                seen += len(labels)
        accuracy = correct / seen
    return steps * cfg.batch_size / train_seconds, accuracy


def pick_models(n: int, seed: int) -> list[ArchSpec]:
    """`n` proxy specs of spread-out sizes from `n * CANDIDATES_PER_MODEL` random draws."""
    space = load_space(SPACE)
    specs = [space.proxy(space.sample_random(seed + i)[0], 10)
             for i in range(n * CANDIDATES_PER_MODEL)]
    specs.sort(key=lambda s: analytic_cost(s).params)
    if n == 1:
        return specs[:1]
    return [specs[round(i * (len(specs) - 1) / (n - 1))] for i in range(n)]


def describe(spec: ArchSpec) -> str:
    mixers = "/".join(m[:4] for m in spec.mixers)
    return f"{mixers} d{list(spec.depths)} w{list(spec.widths)}"


def warm_up(spec: ArchSpec, info: DatasetInfo, cfg: TrainConfig, workers: int) -> None:
    """Pay one-off costs before timing: FFCV's JIT of the shared loaders, first-call kernels."""
    args = dict(batch_size=cfg.batch_size, num_workers=workers, device=torch.device(cfg.device))
    loaders = (  # the very loaders train_proxy asks for, so it reuses them
        shared_loader(info, "train", shuffle=True, seed=data_seed(cfg.seed), drop_last=True,
                      **args),
        shared_loader(info, "val", shuffle=False, **args),
    )
    for loader in loaders:
        for _ in loader:
            pass
    model = build_model(spec)
    model(torch.randn(cfg.batch_size, 3, info.resolution, info.resolution)).sum().backward()


def bench_trainers(info: DatasetInfo, train: ImageDataset, val: ImageDataset,
                   specs: list[ArchSpec], cfg: TrainConfig, torch_workers: int) -> list[TrainRow]:
    rows = []
    threads = cfg.threads or torch.get_num_threads()
    for spec in specs:
        cost = analytic_cost(spec)
        label = describe(spec)
        torch.manual_seed(cfg.seed)
        ours = build_model(spec)
        theirs = copy.deepcopy(ours)  # the same initial weights
        warm_up(spec, info, cfg, threads)

        start = time.perf_counter()
        result = train_proxy(ours, info, cfg)
        wall = time.perf_counter() - start
        rows.append(TrainRow(label, cost.params / 1e6, cost.macs / 1e6, "train_proxy (ffcv)",
                             result.images_per_second, wall, result.accuracy))

        torch.set_num_threads(threads)
        start = time.perf_counter()
        rate, accuracy = timm_style_train(theirs, train, val, cfg, torch_workers)
        wall = time.perf_counter() - start
        rows.append(TrainRow(label, cost.params / 1e6, cost.macs / 1e6,
                             f"timm-style (torch, {torch_workers} workers)", rate, wall,
                             accuracy))
        for row in rows[-2:]:
            print(f"  trainer {label:<40} {row.trainer:<30} {row.images_per_second:>8,.0f} "
                  f"img/s {row.wall_seconds:>7.1f} s  val {row.val_accuracy:.3f}", flush=True)
    return rows


# ============================================================================ report

def loader_table(rows: list[LoaderRow]) -> list[str]:
    lines = ["| batch | loader | images/s (median) | spread | vs ffcv |",
             "|---:|---|---:|---:|---:|"]
    for row in rows:
        ffcv = next(r for r in rows if r.batch_size == row.batch_size
                    and r.loader.startswith("ffcv"))
        lines.append(f"| {row.batch_size} | {row.loader} | {row.images_per_second:,.0f} | "
                     f"{row.spread:.0%} | {row.images_per_second / ffcv.images_per_second:.2f}x |")
    return lines


def trainer_table(rows: list[TrainRow], epochs: int) -> list[str]:
    lines = [f"| model | params (M) | MACs (M) | trainer | train images/s | wall s ({epochs} ep, "
             "with eval) | val acc | speed vs timm-style |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for ours, theirs in zip(rows[::2], rows[1::2]):
        for row in (ours, theirs):
            lines.append(f"| {row.model} | {row.params_m:.2f} | {row.macs_m:.1f} | {row.trainer} "
                         f"| {row.images_per_second:,.0f} | {row.wall_seconds:.1f} | "
                         f"{row.val_accuracy:.3f} | "
                         f"{row.images_per_second / theirs.images_per_second:.2f}x |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="clutter", help="prepared dataset (default clutter)")
    ap.add_argument("--cache-dir", default=None, help="dataset cache (default $NAS_CACHE_DIR)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per run (default 3)")
    ap.add_argument("--models", type=int, default=3,
                    help=f"proxy models from {SPACE}, spread in size (default 3)")
    ap.add_argument("--batch-size", type=int, default=64, help="training batch (default 64)")
    ap.add_argument("--loader-batch-sizes", type=int, nargs="+", default=[64, 256],
                    help="loader benchmark batch sizes (default 64 256)")
    ap.add_argument("--loader-epochs", type=int, default=5,
                    help="timed loader epochs after one warm-up (default 5)")
    ap.add_argument("--torch-workers", type=int, nargs="+", default=[0, 1, 2],
                    help="DataLoader worker counts in the loader benchmark (default 0 1 2)")
    ap.add_argument("--train-workers", type=int, default=0,
                    help="DataLoader workers of the timm-style trainer (default 0)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (and FFCV workers) for everything (default: torch's)")
    ap.add_argument("--seed", type=int, default=0, help="model sampling and training seed")
    ap.add_argument("--skip-loader", action="store_true", help="skip the loader benchmark")
    ap.add_argument("--skip-trainer", action="store_true", help="skip the trainer benchmark")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: digits, 1 model, 1 epoch, 1 timed loader epoch")
    args = ap.parse_args(argv)
    if args.quick:
        args.dataset, args.epochs, args.models, args.loader_epochs = "digits", 1, 1, 1
        args.loader_batch_sizes, args.torch_workers = [64], [0]
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()  # read before importing ffcv: that sets it to 1
    import ffcv
    import numba
    import timm

    info = prepare_dataset(args.dataset, args.cache_dir)
    command = shlex.join(["python", "benchmarks/bench_speed.py", *(argv or sys.argv[1:])])
    print(f"$ {command}")
    print(f"torch {torch.__version__}, timm {timm.__version__}, ffcv {ffcv.__version__}, "
          f"numba {numba.__version__}, python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}; torch threads {threads} "
          f"(FFCV workers {threads}); CPU, pin_memory off")
    load, cores = os.getloadavg()[0], os.cpu_count()
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
          f"load average {load:.1f} on {cores} cores before starting"
          + (" (busy machine: figures are indicative only)" if load > 0.5 * cores else ""))
    print(f"dataset {info.name}: {info.num_train} train / {info.num_val} val images at "
          f"{info.resolution} px", flush=True)
    train = ImageDataset(*read_split(info, "train"), info)
    val = ImageDataset(*read_split(info, "val"), info)

    tables = []
    if not args.skip_loader:
        rows = bench_loaders(info, train, args.loader_batch_sizes, args.torch_workers, threads,
                             args.loader_epochs)
        tables += [f"Loader: {info.name} train split, shuffled full epochs, median of "
                   f"{args.loader_epochs} after 1 warm-up; torch threads: {threads}", "",
                   *loader_table(rows), ""]
    if not args.skip_trainer:
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                          threads=threads, eval_every_epoch=True, evaluate_test=False)
        rows = bench_trainers(info, train, val, pick_models(args.models, args.seed), cfg,
                              args.train_workers)
        tables += [f"Trainer: {info.name}, {args.epochs} epochs, batch {args.batch_size}, "
                   f"torch threads: {threads}, {SPACE} proxy models", "",
                   *trainer_table(rows, args.epochs), ""]
    print()
    print("\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
