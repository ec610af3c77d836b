"""Checks of an export directory shared by the unit and end-to-end export tests: each file is
loaded the way a user would (a fresh interpreter that cannot import this project, onnxruntime,
torch.jit) and compared with the in-process model built from config.yaml with the same weights."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from nas.models import build_model

# The interpreter sees the venv's packages (torch, timm) but refuses every package of this
# project, even through the editable install, and says if any was imported all the same.
FRESH = r"""
import importlib.abc, json, sys
BLOCKED = {"nas", "nas_errors", "db", "proxies", "search_spaces"}

class NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked: {name}")

sys.meta_path.insert(0, NoProject())
directory, x_path, out_path, name = sys.argv[1:5]
sys.path.insert(0, directory)
import timm, timm.data, timm.optim, torch
from safetensors.torch import load_file, save_file
import model
weights = load_file(directory + "/model.safetensors")
x = load_file(x_path)["x"]
net = model.create_model().eval()
net.load_state_dict(weights)
# as timm's train.py creates it (its None arguments are dropped by create_model)
via_timm = timm.create_model(name, pretrained=False, in_chans=3, drop_rate=0.0,
                             drop_path_rate=0.1, global_pool=None, bn_momentum=None,
                             checkpoint_path=directory + "/model.safetensors").eval()
with torch.no_grad():
    save_file({"model_py": net(x).contiguous(), "timm": via_timm(x).contiguous()}, out_path)
data = timm.data.resolve_data_config({}, model=via_timm)
# and one training step with timm's optimizer factory, drop path active
optimizer = timm.optim.create_optimizer_v2(via_timm.train(), "adamw", lr=1e-3,
                                           weight_decay=0.05)
logits = via_timm(x)
loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(x), dtype=torch.long))
loss.backward()
optimizer.step()
print(json.dumps({"project_modules": sorted(m for m in sys.modules
                                            if m.partition(".")[0] in BLOCKED),
                  "model_name": model.NAME, "input_size": list(data["input_size"]),
                  "train_loss_finite": bool(torch.isfinite(loss))}))
"""


def in_process_model(out: Path) -> torch.nn.Module:
    """The project's model built from ``config.yaml``, holding ``model.safetensors``."""
    model = build_model(yaml.safe_load((out / "config.yaml").read_text())).eval()
    model.load_state_dict(load_file(str(out / "model.safetensors")))
    return model


def example(out: Path, batch: int = 2, seed: int = 123) -> torch.Tensor:
    config = yaml.safe_load((out / "config.yaml").read_text())
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config["in_chans"], config["img_size"], config["img_size"],
                       generator=g)


def run_fresh(out: Path, name: str, tmp: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Run the export's model.py (own and through timm) in a fresh interpreter on
    :func:`example`; (what it reported, its outputs)."""
    from safetensors.torch import save_file

    x_path, y_path = tmp / "x.safetensors", tmp / "y.safetensors"
    save_file({"x": example(out)}, str(x_path))
    proc = subprocess.run([sys.executable, "-I", "-B", "-c", FRESH, str(out), str(x_path),
                           str(y_path), name], cwd=tmp, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"model.py failed stand-alone:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), load_file(str(y_path))


def card_value(card: str, row: str) -> str:
    """The value cell of ``| row | value |`` in the model card."""
    m = re.search(rf"^\| {re.escape(row)} \| (.*) \|$", card, re.MULTILINE)
    assert m, f"no row {row!r} in the model card:\n{card}"
    return m.group(1)


def card_int(card: str, row: str) -> int:
    """The first integer (with thousands separators) of a card row."""
    m = re.match(r"([\d,]+)", card_value(card, row))
    assert m, f"row {row!r} does not start with an integer: {card_value(card, row)!r}"
    return int(m.group(1).replace(",", ""))


def check_runtimes(out: Path, name: str, tmp: Path) -> None:
    """model.py (fresh interpreter, also through timm), ONNX (onnxruntime) and TorchScript each
    reproduce the in-process model's outputs with the exported weights."""
    import onnxruntime

    ours = in_process_model(out)
    x = example(out)
    with torch.no_grad():
        expected = ours(x)
    report, got = run_fresh(out, name, tmp)
    side = x.shape[-1]
    assert report == {"project_modules": [], "model_name": name, "train_loss_finite": True,
                      "input_size": [x.shape[1], side, side]}, report
    for key in ("model_py", "timm"):
        assert torch.allclose(got[key], expected, atol=1e-5, rtol=1e-5), (
            f"{key}: max |diff| {(got[key] - expected).abs().max():.3g} from the in-process model")

    session = onnxruntime.InferenceSession(str(out / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    x3 = example(out, batch=3, seed=7)  # another batch size than the exporter used
    (logits,) = session.run(["logits"], {"image": x3.numpy()})
    with torch.no_grad():
        expected3 = ours(x3)
    diff = (torch.from_numpy(logits) - expected3).abs().max()
    assert diff < 1e-4, f"onnxruntime differs from PyTorch by {diff:.3g}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still loads
        scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    with torch.no_grad():
        diff = (scripted(x3) - expected3).abs().max()
    assert diff < 1e-5, f"TorchScript differs from PyTorch by {diff:.3g}"
