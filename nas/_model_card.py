"""The README.md model card of an export: what the model is, how it was found, how to use it.

Every number comes from the database record (proxy accuracy with its standard error, the
searched model's MACs and params), the analytic cost model (the exported model's), the study's
stored settings, or the checks the export ran; nothing is re-measured here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from db.records import StudyRecord, TrialRecord
from nas.analysis import (
    evaluated,
    noisy_front,
    non_dominated_sort,
    pareto_front,
    proxy_twins,
    reused_from,
)
from nas.models import ArchSpec, Cost, arch_hash, describe
from nas.models._timm import registered_here
from nas_errors import printable

__all__ = ["CardInfo", "render_card", "front_position", "FrontPosition", "TRAIN_SETTINGS"]

#: the study settings shown in the card's table (the whole stored configuration follows it)
TRAIN_SETTINGS = ("dataset", "dataset_resolution", "dataset_sizes", "epochs", "batch_size", "lr",
                  "repeats", "sampler", "seed", "scheduler", "budget", "proxy")


@dataclass(frozen=True)
class FrontPosition:
    """Where a trial stands among its study's completed trials, over the study's objectives."""

    objectives: tuple[str, ...]
    evaluated: int  # completed trials with every objective
    rank: int  # 1 = on the Pareto front, 2 = on the front once the first is removed, ...
    front_size: int  # trials on the Pareto front
    index: int | None  # 1-based place on the front, cheapest first (None: not on it)
    dominated_by: tuple[int, ...]  # numbers of the front trials that dominate it
    within_noise: tuple[int, ...]  # trials that could, within noise, be at least as good
    same_proxy: tuple[int, ...] = ()  # other completed trials that trained the same proxy
    reused_from: int | None = None  # the twin whose proxy result it was recorded with


def front_position(trial: TrialRecord, trials: Sequence[TrialRecord],
                   objectives: Sequence[str]) -> FrontPosition | None:
    """``trial``'s rank and place on the front (``nas.analysis``); None if it is not evaluated."""
    ev = evaluated(trials, objectives)
    numbers = [t.number for t in ev.trials]
    if trial.number not in numbers:
        return None
    ranks = non_dominated_sort(ev.losses)
    i = numbers.index(trial.number)
    front = pareto_front(ev)
    on_front = [t.number for t in front]
    mine = ev.losses[i]
    dominated_by = tuple(
        t.number for t in front
        if np.all(ev.losses[numbers.index(t.number)] <= mine)
        and np.any(ev.losses[numbers.index(t.number)] < mine)
    )
    noise = next((m.tied_with for m in noisy_front(ev).members if m.trial.number == trial.number),
                 ())
    index = on_front.index(trial.number) + 1 if trial.number in on_front else None
    return FrontPosition(tuple(objectives), len(ev), int(ranks[i]) + 1, len(front), index,
                         dominated_by, tuple(noise), proxy_twins(trials).get(trial.number, ()),
                         reused_from(trial))


@dataclass(frozen=True)
class CardInfo:
    name: str  # the model's name (timm, model.py's NAME)
    how: str  # how it was chosen, as a command-line fragment
    spec: ArchSpec  # the exported architecture (num_classes, img_size applied)
    cost: Cost  # the exported architecture's analytic cost
    searched: ArchSpec  # the architecture as searched (or the preset as defined)
    files: Mapping[str, int]  # file name -> bytes (all but README.md)
    checks: Mapping[str, Any]  # what the export verified (max |diff| per runtime, opset, ...)
    seed: int  # torch seed of the initialised weights
    versions: Mapping[str, str]  # library versions of the export
    trial: TrialRecord | None = None
    study: StudyRecord | None = None
    position: FrontPosition | None = None
    preset: str | None = None
    db_url: str | None = None  # masked
    command: str = ""
    train_settings: Mapping[str, Any] = field(default_factory=dict)


def _g(n: float) -> str:
    return f"{n / 1e9:.3f} G"


def _m(n: float) -> str:
    return f"{n / 1e6:.3f} M"


def _acc(value: float | None, se: float | None = None) -> str:
    if value is None:
        return "not recorded"
    return f"{value:.4f}" + ("" if se is None else f" ± {se:.4f}")


def render_card(info: CardInfo) -> str:
    """The model card (Markdown)."""
    spec, t = info.spec, info.trial
    out = [f"# {info.name}", ""]
    if t is not None and info.study is not None:
        out += [f"Trial #{t.number} of study `{printable(info.study.name)}` "
                f"(space `{printable(info.study.space)}`), "
                f"chosen by `{info.how}`, exported by metaformer-nas as a full model: "
                f"`{describe(spec)}`.", ""]
    else:
        out += [f"The preset `{info.preset}`, exported by metaformer-nas as a full model: "
                f"`{describe(spec)}`. A named architecture, not found by a search: no proxy "
                "accuracy or Pareto front to report.", ""]

    out += ["## The model", "", "| | |", "|---|---|",
            f"| architecture | `{describe(spec)}` ({spec.family}) |",
            f"| input | {spec.in_chans} x {spec.img_size} x {spec.img_size} |",
            f"| classes | {spec.num_classes} |",
            f"| params (exported) | {info.cost.params:,} ({_m(info.cost.params)}) |",
            f"| MACs (exported, batch 1) | {info.cost.macs:,} ({_g(info.cost.macs)}) |",
            f"| activations (exported, batch 1) | {info.cost.acts:,} |",
            f"| architecture hash (exported) | `{arch_hash(spec)}` |",
            f"| weights | initialised (torch seed {info.seed}), not trained |", "",
            "Params and MACs of the exported model are the analytic cost model's (MACs = FLOPs "
            "/ 2; convolutions, matrix products and attention), which the project's tests check "
            "against a traced count; params include frozen ones (RandFormer's random "
            "matrices).", ""]

    if t is not None and info.study is not None:
        out += _search_section(info, t, info.study)
    out += _files_section(info)
    out += _usage_section(info)
    return "\n".join(out).rstrip() + "\n"


def _search_section(info: CardInfo, t: TrialRecord, study: StudyRecord) -> list[str]:
    m = t.metrics
    rows = [
        ("study", f"`{printable(study.name)}`" + (f" in `{info.db_url}`" if info.db_url else "")),
        ("search space", f"`{study.space}` (hash `{study.space_hash}`)"),
        ("trial", f"#{t.number} ({t.state}), architecture hash `{t.arch_hash}`"),
        ("chosen by", f"`{info.how}`"),
        ("proxy validation accuracy", _acc(t.accuracy, t.accuracy_se)
         + (f" (mean of {m['repeats']} trainings)" if m.get("repeats", 1) > 1 else "")),
        ("proxy test accuracy", _acc(t.test_accuracy, m.get("test_accuracy_se"))),
        ("validation / test images", f"{m.get('num_val', '?')} / {m.get('num_test', '?')}"),
        ("MACs as searched", f"{t.macs:,} ({_g(t.macs)}) at {t.spec.img_size} px, "
                             f"{t.spec.num_classes} classes"),
        ("params as searched", f"{t.params_count:,} ({_m(t.params_count)})"),
    ]
    if "proxy_macs" in m:
        rows.append(("proxy trained", f"{m.get('proxy_params', 0):,} params, "
                                      f"{m['proxy_macs']:,} MACs"))
    out = ["## How it was found", "", "| | |", "|---|---|",
           *(f"| {k} | {v} |" for k, v in rows), ""]
    out += ["Accuracies are those of the reduced *proxy* the search trained (the space's proxy "
            "settings below), on the study's dataset; they rank architectures and say nothing "
            "absolute about the full model on another task. ± is the standard error (binomial on "
            "the validation images, plus the seed spread with repeats): two trials closer than "
            "about 2.5 standard errors are not distinguishable.", ""]

    p = info.position
    out += ["### Place on the Pareto front", ""]
    if p is None:
        out += ["Not evaluated: it lacks a finite value for one of the study's objectives.", ""]
    else:
        objs = ", ".join(f"`{o}`" for o in p.objectives)
        if p.rank == 1:
            out.append(f"On the Pareto front over {objs}: member {p.index} of {p.front_size} "
                       f"(cheapest first), among {p.evaluated} completed trials.")
        else:
            by = ", ".join(f"#{n}" for n in p.dominated_by) or "none on the front"
            out.append(f"Not on the Pareto front over {objs}: non-dominated rank {p.rank} "
                       f"(1 = the front, {p.front_size} trials) among {p.evaluated} completed "
                       f"trials; dominated by {by}.")
        if p.within_noise:
            out.append("Within noise of trial(s) " + ", ".join(f"#{n}" for n in p.within_noise)
                       + " (at least as good in every objective, within 1.96 standard errors).")
        else:
            out.append("No other trial is at least as good in every objective within noise.")
        if p.same_proxy:
            how = ("It trained the same proxy as trial(s) " if p.reused_from is None else
                   f"It was recorded with trial #{p.reused_from}'s proxy result, not trained "
                   "(a proxy twin), and has the same proxy as trial(s) ")
            out.append(how + ", ".join(
                f"#{n}" for n in p.same_proxy) + ": the choices that tell these full models "
                "apart are lost in the proxy (rounded away, or set by the proxy itself), so its "
                "accuracy is evidence for none of them over the others; only their costs "
                "differ.")
        out.append("")

    settings = {k: study.config[k] for k in TRAIN_SETTINGS if k in study.config}
    out += ["### Study settings", "", "| setting | value |", "|---|---|"]
    out += [f"| objectives | {', '.join(study.objectives)} |"]
    out += [f"| {k} | `{json.dumps(v)}` |" for k, v in settings.items()]
    out += ["", "<details><summary>the study's whole stored configuration</summary>", "",
            "```json", json.dumps(study.config, indent=2, sort_keys=True, default=str), "```",
            "", "</details>", ""]
    return out


def _files_section(info: CardInfo) -> list[str]:
    c = info.checks
    what = {
        "config.yaml": "the architecture (`nas.models.build_model(yaml.safe_load(...))`)",
        "model.py": "builds the model with only torch and timm (no import of metaformer-nas); "
                    f"checked in a fresh interpreter: max abs. difference {c['standalone']:.2e}",
        "model.safetensors": "the initialised weights (state dict, timm-style names)",
        "model.torchscript.pt": "TorchScript (traced, batch dimension free); reloaded and "
                                f"checked: max abs. difference {c['torchscript']:.2e}",
        "model.onnx": f"ONNX opset {c['onnx']['opset']}, input `image` (N, {info.spec.in_chans}, "
                      f"{info.spec.img_size}, {info.spec.img_size}), output `logits`; run in "
                      f"onnxruntime {c['onnx']['onnxruntime']} and checked: max abs. difference "
                      f"{c['onnx']['max_abs_diff']:.2e}",
    }
    if "model.onnx.data" in info.files:  # weights past ONNX's 2 GB limit: the exporter's file
        what["model.onnx.data"] = ("the ONNX model's weights (past ONNX's 2 GB limit for one "
                                   "file); `model.onnx` needs it beside it")
    what["README.md"] = "this model card"
    out = ["## Files", "", "| file | bytes | what |", "|---|---|---|"]
    for f, text in what.items():
        size = f"{info.files[f]:,}" if f in info.files else ""
        out.append(f"| `{f}` | {size} | {text} |")
    out += ["", "Checks compare each file's outputs with the in-process PyTorch model on random "
            "inputs (batch sizes 2-3); tolerance |diff| <= 1e-4 + 1e-3 |expected|.", ""]
    versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
    out += [f"Exported with {versions}" + (f": `{info.command}`" if info.command else "") + ".",
            ""]
    return out


def _in_the_project(info: CardInfo) -> list[str]:
    """How a process that imports metaformer-nas gets the same model: a preset under its own
    name is already a timm model there (at the preset's own size), anything else is
    registered from config.yaml."""
    name, spec = info.name, info.spec
    if info.preset is not None and info.preset == name:
        if not registered_here(name):
            return [f"`{name}` is timm's own model, which `timm.create_model(\"{name}\", "
                    f"num_classes={spec.num_classes})` builds with or without this project "
                    "(its layers do not depend on the input size)."]
        return [f"In a process that imports metaformer-nas, `{name}` is already a timm model "
                f"(the preset, at its own input size): `timm.create_model(\"{name}\", "
                f"num_classes={spec.num_classes}, img_size={spec.img_size})` builds this "
                "export's architecture there, and the `import model` above does not replace "
                "it."]
    return [f"In a process that imports metaformer-nas, `nas.models.register_timm(\"{name}\", "
            "yaml.safe_load(open(\"config.yaml\")))` registers the same architecture."]


def _usage_section(info: CardInfo) -> list[str]:
    name, spec = info.name, info.spec
    return [
        "## Use", "",
        "With only torch, timm and safetensors installed, from this directory:", "",
        "```python",
        "import timm, torch",
        "import model  # registers the name with timm",
        "from safetensors.torch import load_file",
        "",
        "net = model.create_model()  # or num_classes=..., img_size=...",
        'net.load_state_dict(load_file("model.safetensors"))',
        f'net = timm.create_model("{name}", pretrained=False, num_classes={spec.num_classes},',
        '                        checkpoint_path="model.safetensors")  # the same, through timm',
        f"logits = net.eval()(torch.randn(1, {spec.in_chans}, {spec.img_size}, "
        f"{spec.img_size}))",
        "```", "",
        *_in_the_project(info), "",
        "### Train it with timm's train.py", "",
        "`train.py` is in timm's repository (not in its wheel); `model.py` must be imported "
        "first so that timm knows the name:", "",
        "```bash",
        "git clone --branch v1.0.31 https://github.com/huggingface/pytorch-image-models "
        "../timm-src",
        "python -c \"import runpy, sys, model; sys.argv[0] = 'train.py'; "
        "runpy.run_path('../timm-src/train.py', run_name='__main__')\" \\",
        f"    --data-dir /path/to/imagenet --model {name} --num-classes {spec.num_classes} "
        f"--img-size {spec.img_size} \\",
        "    --initial-checkpoint model.safetensors --opt adamw --lr 1e-3 --weight-decay 0.05 "
        "--sched cosine \\",
        "    --epochs 300 --warmup-epochs 5 --drop-path 0.1 -b 128 --amp",
        "```", "",
        "Run it from this directory (`import model` finds `model.py` there). "
        "`--initial-checkpoint` starts from the exported weights (for RandFormer-style "
        "mixers this fixes their frozen random matrices); leave it out to draw new ones. "
        "The recipe is a starting point, not the one the papers tuned.",
    ]
