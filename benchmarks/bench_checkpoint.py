"""What the trainer's per-epoch checkpoint costs, and that a resumed run is the unbroken run.

Each of N random proxies of a space (the search's default proxy: 3 epochs, batch 64, one torch
thread, as a trial on CPU) is trained once with ``TrainConfig.checkpoint`` set, timing every
save (``proxies.train._save_checkpoint``) against the epoch's training time, and once more
"killed" after epoch 1 (an exception from ``on_epoch``, after that epoch's save) and resumed
from the file in a fresh model. Prints a Markdown table: the file's size, the mean save time,
the saves' share of the training time, and whether the resumed run's validation and test
accuracy and summed training loss equal the unbroken run's exactly.

Usage (from the repository root, on an otherwise idle machine)::

    .venv/bin/python benchmarks/bench_checkpoint.py -n 8                # clutter, hybrid_conv_attn
    .venv/bin/python benchmarks/bench_checkpoint.py -n 2 --epochs 2 --dataset digits  # smoke
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import proxies.train as train_module  # noqa: E402
from nas.models import analytic_cost, build_model  # noqa: E402
from proxies import TrainConfig, prepare_dataset, train_proxy  # noqa: E402
from search_spaces import load_space  # noqa: E402


class _Killed(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--models", type=int, default=8, help="random proxies (default 8)")
    p.add_argument("--space", default="hybrid_conv_attn")
    p.add_argument("--dataset", default="clutter")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=300, help="first random draw of the space")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the resumed run is killed after epoch 1)")
    torch.set_num_threads(1)
    space = load_space(args.space)
    info = prepare_dataset(args.dataset)
    print(f"$ {shlex.join(['python', 'benchmarks/bench_checkpoint.py', *(argv or sys.argv[1:])])}")
    print(f"{args.space} proxies on {args.dataset}, {args.epochs} epochs, batch 64, 1 thread\n")
    print("| model | proxy MMACs | params M | file MB | save ms (mean of "
          f"{args.epochs}) | saves / training time | resumed = unbroken |")
    print("|---:|---:|---:|---:|---:|---:|---|")

    saves: list[float] = []
    original = train_module._save_checkpoint

    def timed_save(path, state):
        t0 = time.perf_counter()
        original(path, state)
        saves.append(time.perf_counter() - t0)

    train_module._save_checkpoint = timed_save
    all_saves, all_train, equal = 0.0, 0.0, 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.models):
                spec = space.proxy(space.sample_random(args.seed + i)[0], info.num_classes)
                path = os.path.join(tmp, f"model{i}.pt")
                cfg = TrainConfig(epochs=args.epochs, threads=1, checkpoint=path)

                def fresh():
                    torch.manual_seed(0)
                    return build_model(spec)

                model = fresh()
                params = sum(t.numel() for t in model.parameters())
                saves.clear()
                unbroken = train_proxy(model, info, cfg)
                size = os.path.getsize(path)
                save_s = sum(saves)
                os.unlink(path)

                def kill_after_first(stats):
                    if stats.epoch == 1:
                        raise _Killed

                try:
                    train_proxy(fresh(), info, cfg, on_epoch=kill_after_first)
                except _Killed:
                    pass
                resumed = train_proxy(fresh(), info, cfg)
                os.unlink(path)
                same = (resumed.resumed_epochs == 1 and
                        (resumed.accuracy, resumed.test_accuracy, resumed.train_loss_sum)
                        == (unbroken.accuracy, unbroken.test_accuracy, unbroken.train_loss_sum))
                equal += same
                all_saves += save_s
                all_train += unbroken.train_seconds
                print(f"| {i} | {analytic_cost(spec).macs / 1e6:.1f} | {params / 1e6:.2f} | "
                      f"{size / 1e6:.1f} | {1e3 * save_s / args.epochs:.1f} | "
                      f"{100 * save_s / unbroken.train_seconds:.2f}% | "
                      f"{'yes' if same else 'NO'} (val {resumed.accuracy:.4f} / "
                      f"{unbroken.accuracy:.4f}) |", flush=True)
    finally:
        train_module._save_checkpoint = original
    print(f"\nsaves: {all_saves:.2f} s over {all_train:.1f} s of training "
          f"({100 * all_saves / max(all_train, 1e-9):.2f}%); resumed runs equal to the unbroken "
          f"ones: {equal} of {args.models}")
    return 0 if equal == args.models else 1


if __name__ == "__main__":
    sys.exit(main())
