"""The files of an export, each written and then checked against the in-process model.

``model.py`` is ``nas/models/portable.py`` verbatim (torch and timm only) with a new docstring,
followed by the exported configuration and timm's entry point; it is checked in a fresh
interpreter that cannot import this project. The ONNX file is run in onnxruntime and the
TorchScript file reloaded, both on a batch size other than the one they were traced with.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import json
import os
import pprint
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.errors import NasError
from nas.models import portable

__all__ = ["ExportCheckError", "standalone_source", "write_config", "write_weights",
           "write_torchscript", "write_onnx", "check_standalone", "TOLERANCE"]

#: outputs of two runtimes "agree" when |a - b| <= atol + rtol * |b| everywhere
TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}
#: top-level packages of this project, which an exported model.py must not import
PROJECT_PACKAGES = ("nas", "nas_errors", "db", "proxies", "search_spaces")


class ExportCheckError(NasError):
    """A written file does not reproduce the in-process model (the export is not kept)."""


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def _agree(what: str, got: torch.Tensor, expected: torch.Tensor) -> float:
    if got.shape != expected.shape:
        raise ExportCheckError(f"{what}: output shape {tuple(got.shape)}, expected "
                               f"{tuple(expected.shape)}")
    if not torch.allclose(got.double(), expected.double(), **TOLERANCE):
        raise ExportCheckError(f"{what}: outputs differ from PyTorch's by up to "
                               f"{max_diff(got, expected):.3g} (tolerance {TOLERANCE})")
    return max_diff(got, expected)


def example_input(config: Mapping[str, Any], batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    side = config["img_size"]
    return torch.randn(batch, config["in_chans"], side, side, generator=g)


# --------------------------------------------------------------------------- config.yaml


def write_config(path: Path, arch: dict[str, Any], header: str) -> None:
    """The architecture as YAML (``to_dict`` form, loadable by ``build_model``), with a
    commented ``header``."""
    import yaml

    plain = json.loads(json.dumps(arch))  # tuples -> lists, for safe_dump
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    path.write_text(comments + yaml.safe_dump(plain, sort_keys=False))


# --------------------------------------------------------------------------- model.py


def standalone_source(name: str, config: Mapping[str, Any], docstring: str) -> str:
    """``portable.py``'s source with ``docstring`` replacing its own, then ``NAME``, ``CONFIG``,
    ``create_model()`` and a timm entry point registered when timm lacks ``name``."""
    source = inspect.getsource(portable)
    first = ast.parse(source).body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
        raise AssertionError("portable.py must open with its docstring")
    body = "".join(source.splitlines(keepends=True)[first.end_lineno:])
    # a backslash (a study's name may hold one) is escaped: the docstring reads as it was given
    doc = '"""' + docstring.strip().replace("\\", "\\\\").replace('"""', "'''") + '\n"""\n'
    config_text = pprint.pformat(json.loads(json.dumps(dict(config))), width=95,
                                 sort_dicts=False)
    return doc + body + _FOOTER.format(name=name, config=config_text)


_FOOTER = '''

# =========================================================================== the export

NAME = {name!r}
CONFIG = {config}


def create_model(num_classes: int | None = None, img_size: int | None = None,
                 in_chans: int | None = None, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0) -> nn.Module:
    """The exported architecture, freshly initialised; arguments given replace CONFIG's."""
    given = {{"num_classes": num_classes, "img_size": img_size, "in_chans": in_chans}}
    config = {{**CONFIG, **{{k: v for k, v in given.items() if v is not None}}}}
    model = build(config, drop_path_rate=drop_path_rate, drop_rate=drop_rate)
    model.pretrained_cfg = model.default_cfg = {{**timm_cfg(config), "architecture": NAME}}
    return model


def _timm_entry(pretrained: bool = False, **kwargs) -> nn.Module:
    if pretrained:
        raise ValueError(f"{{NAME}} has no pretrained weights; use pretrained=False and "
                         "checkpoint_path='model.safetensors' (or your trained weights)")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return create_model(**kwargs)


# timm.create_model(NAME, ...) works once this file is imported (timm's own model of this name,
# the same architecture, is kept when timm has one; so is another export of this name registered
# before, by its model.py or $NAS_EXPORT_PATH, with a warning if its architecture differs)
import warnings  # noqa: E402

from timm.models import is_model, model_entrypoint, register_model  # noqa: E402

_timm_entry.__name__ = _timm_entry.__qualname__ = NAME
_timm_entry.CONFIG = CONFIG  # what another export of this name compares its own with
globals()[NAME] = _timm_entry
if not is_model(NAME):
    register_model(_timm_entry)
elif getattr(model_entrypoint(NAME), "CONFIG", getattr(
        model_entrypoint(NAME), "__globals__", {{}}).get("CONFIG", CONFIG)) != CONFIG:
    warnings.warn(
        f"timm already has a model {{NAME!r}} from another export, another architecture or "
        f"size: timm.create_model({{NAME!r}}) makes that one; this file's create_model() makes "
        "this one (or export it again with another --name)", stacklevel=2)
'''


# --------------------------------------------------------------------------- weights


def write_weights(path: Path, model: nn.Module, metadata: Mapping[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=dict(metadata))


# --------------------------------------------------------------------------- TorchScript


@contextlib.contextmanager
def _quiet():
    """Tracing and exporting talk (deprecation notes, tracer warnings, progress lines)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def write_torchscript(path: Path, model: nn.Module, config: Mapping[str, Any]) -> float:
    """Trace ``model`` at batch 1, save it, reload it and compare at batch 3; the max |diff|."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, example_input(config, 1, seed=1))
        buffer = io.BytesIO()  # (saved to a file, a full disk aborts the process in C++)
        torch.jit.save(traced, buffer)
        path.write_bytes(buffer.getbuffer())
        del buffer
        loaded = torch.jit.load(str(path))
        x = example_input(config, 3, seed=2)
        return _agree("TorchScript", loaded(x), model(x))


# --------------------------------------------------------------------------- ONNX


def write_onnx(path: Path, model: nn.Module, config: Mapping[str, Any]) -> dict[str, Any]:
    """Export with a dynamic batch (torch.export-based exporter, weights inside the file), then
    run it in onnxruntime at batch 3 and compare with PyTorch; what was checked."""
    import onnxruntime

    batch = torch.export.Dim("batch")
    with _quiet():
        torch.onnx.export(model, (example_input(config, 2, seed=1),), str(path), dynamo=True,
                          input_names=["image"], output_names=["logits"],
                          dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = example_input(config, 3, seed=2)
    (got,) = session.run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        diff = _agree("ONNX (onnxruntime)", torch.from_numpy(got), model(x))
    import onnx

    opset = next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx"))
    return {"max_abs_diff": diff, "opset": opset, "onnxruntime": onnxruntime.__version__}


# --------------------------------------------------------------------------- model.py, checked


_CHILD = r"""
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))

class _NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"model.py imported {name!r}, a module of the project")

sys.meta_path.insert(0, _NoProject())
sys.path.insert(0, sys.argv[2])
import torch
from safetensors.torch import load_file, save_file
import model
torch.set_num_threads(1)
net = model.create_model().eval()
net.load_state_dict(load_file(sys.argv[2] + "/model.safetensors"))
with torch.no_grad():
    out = net(load_file(sys.argv[3])["x"])
leaked = sorted(m for m in sys.modules if m.partition(".")[0] in blocked)
if leaked:
    sys.exit(f"project modules were imported: {leaked}")
save_file({"y": out.contiguous()}, sys.argv[4])
"""


def check_standalone(directory: Path, model: nn.Module, config: Mapping[str, Any],
                     timeout: float = 300) -> float:
    """Build ``directory/model.py`` in a fresh interpreter that cannot import this project, load
    ``model.safetensors`` and compare its outputs with ``model``'s; the max |diff|."""
    from safetensors.torch import load_file, save_file

    x = example_input(config, 2, seed=3)
    with tempfile.TemporaryDirectory(prefix="nas-export-check-") as tmp:
        inp, out = Path(tmp) / "x.safetensors", Path(tmp) / "y.safetensors"
        save_file({"x": x}, str(inp))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        proc = subprocess.run(
            [sys.executable, "-I", "-B", "-c", _CHILD, ",".join(PROJECT_PACKAGES), str(directory),
             str(inp), str(out)],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ExportCheckError(f"model.py does not run stand-alone: {last}")
        got = load_file(str(out))["y"]
    with torch.no_grad():
        return _agree("model.py in a fresh interpreter", got, model(x))
