"""The CUDA paths, on a real GPU: FFCV's to-device loading, bf16 autocast with channels-last,
Ray's placement of fractional-GPU trials, and --executor local on the GPU.

Skipped where torch sees no CUDA device (CI, the 2-core development machine); run on a lent GPU
machine with ``python -m pytest tests/gpu_tests -m gpu``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from db import Store
from nas.models import build_model
from proxies import TrainConfig, make_loader, prepare_dataset, train_proxy
from search_spaces import load_space

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return prepare_dataset("digits", tmp_path_factory.mktemp("nas-cache"))


def test_ffcv_loader_puts_channels_last_batches_on_the_gpu(digits):
    loader = make_loader(digits, "train", batch_size=64, shuffle=True, device="cuda",
                         channels_last=True)
    images, labels = next(iter(loader))
    assert images.is_cuda and labels.is_cuda
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.shape == (64, 3, digits.resolution, digits.resolution)
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert abs(images.float().mean().item()) < 1.0  # normalized on the way, not raw 0..255


def test_bf16_channels_last_training_on_the_gpu_learns_and_keeps_fp32_weights(digits):
    space = load_space("hybrid_conv_attn")
    torch.manual_seed(0)
    model = build_model(space.proxy(space.sample_random(0)[0], 10))
    cfg = TrainConfig(epochs=3, device="cuda", amp_bf16=True, channels_last=True, seed=0)
    res = train_proxy(model, digits, cfg)
    assert res.failure is None and not res.diverged
    assert res.accuracy > 0.5, res.accuracy  # chance is 0.1
    params = list(model.parameters())
    assert all(p.is_cuda and p.dtype == torch.float32 for p in params)


def _search(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, str]:
    url = f"sqlite:///{tmp_path}/nas.db"
    r = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--space", "tiny",
                        "--budget", "4", "--epochs", "1", "--dataset", "digits", "--db", url,
                        "--runs-dir", str(tmp_path), *extra],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, url


def test_ray_places_two_trials_on_each_gpu_with_half_a_gpu_each(tmp_path):
    r, url = _search(tmp_path, "--gpus-per-trial", "0.5", "--cpus-per-trial", "1")
    gpus = torch.cuda.device_count()
    assert f"{2 * gpus} trial(s) at a time, each 1 CPU + 0.5 GPU" in r.stdout, r.stdout[-2000:]
    done = Store(url).trials("tiny", states=["COMPLETE"])
    assert len(done) == 4 and all(t.metrics["device"] == "cuda" for t in done)
    # two trials shared the GPU at once: some pair's [start, end] intervals overlap
    spans = sorted((t.started_at, t.finished_at) for t in done)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans


def test_local_executor_trains_on_the_gpu(tmp_path):
    r, url = _search(tmp_path, "--executor", "local")
    done = Store(url).trials("tiny", states=["COMPLETE"])
    assert len(done) == 4 and all(t.metrics["device"] == "cuda" for t in done)
