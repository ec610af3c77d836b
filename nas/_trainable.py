"""The worker side of a search: one Ray trial costs the full model and trains its proxy."""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nas._checkpoints import checkpoint_path, remove_checkpoints
from nas._memory import available_memory, gb, is_out_of_memory, training_bytes
from nas.models import from_dict
from nas.results import TrialFailure, TrialResult

__all__ = ["TrialContext", "trainable", "zero_cost_at_init"]


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a run shares (picklable: it travels to the Ray workers)."""

    dataset: Any  # proxies.DatasetInfo
    epochs: int  # proxy training epochs
    batch_size: int
    lr: float  # AdamW peak learning rate
    seed: int  # training seed; repeat r trains with run_seed(seed, r)
    repeats: int  # proxy trainings per architecture
    compile: bool  # torch.compile the proxy
    threads: int  # torch threads per trial
    latency: bool = False  # also time the full model's forward (an objective needs latency_ms)
    zero_cost: tuple[str, ...] = ()  # zero-cost proxies scored at initialisation, before training
    zero_cost_required: tuple[str, ...] = ()  # of those, the ones an objective names: no finite
    #                                         score fails the trial (before training)
    eval_at: tuple[float, ...] = ()  # validate at these epochs too, a fraction mid-epoch
    #                                  (the ASHA scheduler's rungs and the last epoch), each
    #                                  reported with its `val_accuracy` and `val_loss`
    checkpoint_dir: str | None = None  # each repeat's training state is saved here after every
    #                                    epoch (nas._checkpoints), so a trial run again after a
    #                                    kill or a lost worker resumes after its last epoch


def zero_cost_at_init(proxy: Any, names: Sequence[str], images: Any, labels: Any, seed: int,
                      errors: dict[str, str] | None = None) -> dict[str, float]:
    """Each proxy in ``names`` on the proxy model as repeat 0 initialises it, on the CPU.

    The weights are those the trained model starts from (``run_seed(seed, 0)``); the caller's
    torch RNG state is left as it was. The driver's pre-screen calls this too, so a screened
    candidate's score and the trained trial's recorded score are the same number. With
    ``errors``, a proxy without a finite score is left out and its reason put there; without,
    its ``ZeroCostError`` propagates.
    """
    import torch

    from nas.models import build_model
    from proxies import run_seed
    from proxies.errors import ZeroCostError
    from proxies.zero_cost import zero_cost_score

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run_seed(seed, 0))
        model = build_model(proxy)
    scores = {}
    for name in names:
        try:
            scores[name] = zero_cost_score(name, model, images, labels, seed=seed)
        except ZeroCostError as e:
            if errors is None:
                raise
            errors[name] = str(e)
    return scores


def trainable(config: dict[str, Any], ctx: TrialContext,
              report: Callable[[dict[str, Any]], None] | None = None) -> None:
    """One Ray trial: cost of the full model (meta device), then K proxy trainings.

    Reports one result per epoch while training (``epoch``, ``train_loss``, ...), then a final
    one: :meth:`TrialResult.report`, or :meth:`TrialFailure.report` (e.g. a diverged run), which
    the driver records as a failed trial. ``report``: where results go (default Ray Tune's
    ``tune.report``; ``--executor local`` runs trials in the driver with its own).
    """
    import torch

    if report is None:
        import ray
        from ray import tune

        runtime = ray.get_runtime_context()  # where this trial runs, beside Tune's hostname,
        where = {"ray_node_id": runtime.get_node_id(),  # node_ip and pid in every result
                 "ray_gpu_ids": runtime.get_accelerator_ids().get("GPU", [])}

        def report(result: dict[str, Any]) -> None:
            tune.report({**result, **where})

    from nas.models import analytic_cost, build_model, measure_latency, traced_cost
    from proxies import TrainConfig, run_seed, summarize, train_proxy

    t0 = time.perf_counter()
    if os.environ.get("NAS_TEST_RAISE"):  # TESTS ONLY (test_faults_e2e.py): a trial that raises
        raise RuntimeError(os.environ["NAS_TEST_RAISE"])
    torch.set_num_threads(ctx.threads)
    arch, proxy = from_dict(config["arch"]), from_dict(config["proxy_arch"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    latency_ms = (measure_latency(arch, device=device, threads=ctx.threads, warmup=3, reps=10)
                  .median_ms if ctx.latency else None)
    proxy_cost = analytic_cost(proxy)
    too_big = _too_big_to_train(proxy_cost, ctx.batch_size, device)
    if too_big is not None:  # (a space that validates can still hold such models)
        report(TrialFailure(too_big, [], time.perf_counter() - t0).report())
        return
    # ---- zero-cost scores at initialisation (fixed train batch), before any training
    t_zc = time.perf_counter()
    zero_cost: dict[str, float] = {}
    zc_errors: dict[str, str] = {}
    if ctx.zero_cost:
        from proxies.zero_cost import first_batch

        images, labels = first_batch(ctx.dataset, batch_size=ctx.batch_size, seed=ctx.seed)
        zero_cost = zero_cost_at_init(proxy, ctx.zero_cost, images, labels, ctx.seed, zc_errors)
        torch.set_num_threads(ctx.threads)
        required = [n for n in ctx.zero_cost_required if n in zc_errors]
        if required:  # an objective without a value: Optuna could not be told this trial
            report(TrialFailure(f"objective zc_{required[0]}: {zc_errors[required[0]]}",
                               [], time.perf_counter() - t0).report())
            return
    zc_s = time.perf_counter() - t_zc
    # ---- proxy trainings
    results, curves = [], []
    for repeat in range(ctx.repeats):
        seed = run_seed(ctx.seed, repeat)
        torch.manual_seed(seed)  # weight init is part of the trial's reproducible record
        model, oom = _unless_out_of_memory(lambda: build_model(proxy), "building the proxy")
        if oom is not None:
            report(TrialFailure(oom, curves, time.perf_counter() - t0).report())
            return
        tcfg = TrainConfig(epochs=ctx.epochs, batch_size=ctx.batch_size, lr=ctx.lr, seed=seed,
                           device=device, amp_bf16=device == "cuda",
                           channels_last=device == "cuda", compile=ctx.compile,
                           threads=ctx.threads, eval_at=ctx.eval_at,
                           checkpoint=(checkpoint_path(ctx.checkpoint_dir, config, repeat)
                                       if ctx.checkpoint_dir else None))

        def on_epoch(e, repeat=repeat) -> None:
            report({"repeat": repeat, **dataclasses.asdict(e)})

        res, oom = _unless_out_of_memory(
            lambda: train_proxy(model, ctx.dataset, tcfg, on_epoch=on_epoch),
            "training the proxy")
        if oom is not None:
            del model  # (its memory back before the failure is recorded)
            gc.collect()
            report(TrialFailure(oom, curves, time.perf_counter() - t0).report())
            remove_checkpoints(ctx.checkpoint_dir, config)
            return
        curves.append([dataclasses.asdict(e) for e in sorted((*res.checks, *res.curve),
                                                              key=lambda e: e.epoch)])
        if res.failure is not None:
            report(TrialFailure(res.failure, curves, time.perf_counter() - t0).report())
            remove_checkpoints(ctx.checkpoint_dir, config)
            return
        results.append(res)
    # the full model's traced cost, after training: a trial a rung stops never pays for it
    # (0.1-0.4 s; the driver ranks and records such a trial on the analytic count, equal to it)
    t_count = time.perf_counter()
    full = traced_cost(arch)
    count_s = time.perf_counter() - t_count
    summary = summarize(results)
    report(TrialResult(
        accuracy=summary.accuracy, accuracy_se=summary.accuracy_se,
        test_accuracy=summary.test_accuracy, macs=full.macs, params=full.params,
        acts=full.acts, proxy_macs=proxy_cost.macs, proxy_params=proxy_cost.params,
        accuracy_std=summary.accuracy_std, binomial_se=summary.binomial_se,
        test_accuracy_se=summary.test_accuracy_se, accuracies=tuple(summary.accuracies),
        test_accuracies=tuple(summary.test_accuracies), repeats=summary.repeats,
        val_loss=summary.val_loss, num_val=results[0].num_val, num_test=results[0].num_test,
        final_train_loss=statistics.fmean(r.final_train_loss for r in results),
        train_loss_sum=statistics.fmean(r.train_loss_sum for r in results),
        steps=sum(r.steps for r in results),
        train_seconds=sum(r.train_seconds for r in results),
        eval_seconds=sum(r.eval_seconds for r in results),
        count_seconds=count_s,
        images_per_second=statistics.fmean(r.images_per_second for r in results),
        total_seconds=time.perf_counter() - t0, device=device, curve=curves,
        latency_ms=latency_ms, zero_cost=zero_cost, zero_cost_seconds=zc_s,
        zero_cost_errors=zc_errors, resumed_epochs=tuple(r.resumed_epochs for r in results),
    ).report())
    # (the driver removes them too when it records the trial; this covers a worker node whose
    # files the driver does not see. A trial stopped by a signal never gets here: kept)
    remove_checkpoints(ctx.checkpoint_dir, config)


def _too_big_to_train(cost: Any, batch: int, device: str) -> str | None:
    """Why a proxy of ``cost`` cannot be trained here (at least :func:`training_bytes`, more
    than the free memory of ``device``), or None."""
    need = training_bytes(cost, batch)
    if device == "cuda":
        import torch

        free: int | None = torch.cuda.mem_get_info()[0]
    else:
        free = available_memory()
    if free is None or need <= free:
        return None
    return (f"the proxy needs at least {gb(need)} to train ({cost.params / 1e6:,.1f} M params, "
            f"{cost.acts / 1e6:,.1f} M activations per image, batch {batch}), more than the "
            f"{gb(free)} of {'GPU ' if device == 'cuda' else ''}memory free; a smaller space "
            "(widths, depths, stages) or proxy (width_mult, depth_mult, resolution) would fit")


def _unless_out_of_memory(fn: Callable[[], Any], what: str) -> tuple[Any, str | None]:
    """``(fn(), None)``, or ``(None, "out of memory WHAT: ...")`` when an allocation fails;
    other errors propagate. The exception, and what its frames held, is gone on return."""
    try:
        return fn(), None
    except (MemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        text = str(e).strip()
        why = f"out of memory {what}: {text.splitlines()[0] if text else type(e).__name__}"
    gc.collect()
    return None, why
