"""train_proxy's per-epoch checkpoint: a run resumed after a kill is the unbroken run."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from proxies import DatasetInfo, EpochStats, TrainConfig, train_proxy


class Killed(Exception):
    """What the test raises from `on_epoch` to stand for the process dying there."""


def _model(seed: int = 0) -> nn.Module:
    """The tiny CNN with dropout, so the run draws random numbers a resume must replay."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(16 * 4 * 4, 10))


def _kill_at(epoch: float, calls: list[EpochStats]):
    def on_epoch(stats: EpochStats) -> None:
        calls.append(stats)
        if stats.epoch == epoch:
            raise Killed
    return on_epoch


def _values(stats: EpochStats) -> tuple:
    return dataclasses.replace(stats, seconds=0.0)


CFG = dict(seed=3, epochs=3, eval_at=(0.5, 2, 3))


@pytest.fixture(scope="module")
def unbroken(digits: DatasetInfo):
    calls: list[EpochStats] = []
    return train_proxy(_model(), digits, TrainConfig(**CFG), on_epoch=calls.append), calls


@pytest.mark.parametrize("kill_at", [1, 2])
def test_a_resumed_run_is_the_unbroken_run(digits: DatasetInfo, unbroken, tmp_path, kill_at):
    path = str(tmp_path / "trial.pt")
    cfg = TrainConfig(**CFG, checkpoint=path)
    first: list[EpochStats] = []
    with pytest.raises(Killed):
        train_proxy(_model(), digits, cfg, on_epoch=_kill_at(kill_at, first))
    calls: list[EpochStats] = []
    result = train_proxy(_model(), digits, cfg, on_epoch=calls.append)
    expected, expected_calls = unbroken
    assert result.resumed_epochs == kill_at
    # every report again, in order, the restored ones as they were first reported
    assert calls[:len(first)] == first
    assert [_values(e) for e in calls] == [_values(e) for e in expected_calls]
    assert (result.accuracy, result.val_loss, result.test_accuracy, result.train_loss_sum,
            result.steps, result.epochs) == (
        expected.accuracy, expected.val_loss, expected.test_accuracy, expected.train_loss_sum,
        expected.steps, expected.epochs)


def test_a_finished_run_is_only_evaluated_again(digits: DatasetInfo, unbroken, tmp_path):
    cfg = TrainConfig(**CFG, checkpoint=str(tmp_path / "trial.pt"))
    train_proxy(_model(), digits, cfg)
    calls: list[EpochStats] = []
    again = train_proxy(_model(), digits, cfg, on_epoch=calls.append)
    assert again.resumed_epochs == 3 and len(calls) == len(unbroken[1])
    assert (again.accuracy, again.test_accuracy) == (unbroken[0].accuracy,
                                                     unbroken[0].test_accuracy)


@pytest.mark.parametrize("change", [dict(lr=1e-3), dict(seed=4), dict(epochs=4)])
def test_a_checkpoint_of_other_settings_is_not_resumed(digits: DatasetInfo, tmp_path, change):
    path = str(tmp_path / "trial.pt")
    with pytest.raises(Killed):
        train_proxy(_model(), digits, TrainConfig(**CFG, checkpoint=path),
                    on_epoch=_kill_at(1, []))
    with pytest.warns(UserWarning, match="another model, dataset or training setting"):
        result = train_proxy(_model(), digits, TrainConfig(**{**CFG, **change}, checkpoint=path))
    assert result.resumed_epochs == 0


def test_a_checkpoint_of_another_model_is_not_resumed(digits: DatasetInfo, tmp_path, tiny_cnn):
    path = str(tmp_path / "trial.pt")
    with pytest.raises(Killed):
        train_proxy(_model(), digits, TrainConfig(**CFG, checkpoint=path),
                    on_epoch=_kill_at(1, []))
    with pytest.warns(UserWarning, match="another model"):
        result = train_proxy(tiny_cnn(), digits, TrainConfig(**CFG, checkpoint=path))
    assert result.resumed_epochs == 0


def test_an_unreadable_checkpoint_is_ignored(digits: DatasetInfo, unbroken, tmp_path):
    path = tmp_path / "trial.pt"
    path.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.warns(UserWarning, match="unreadable training checkpoint"):
        result = train_proxy(_model(), digits, TrainConfig(**CFG, checkpoint=str(path)))
    assert result.resumed_epochs == 0 and result.accuracy == unbroken[0].accuracy


def test_a_checkpoint_that_cannot_be_written_does_not_stop_the_run(digits: DatasetInfo,
                                                                   unbroken, tmp_path):
    (tmp_path / "a_file").write_text("")
    path = tmp_path / "a_file" / "trial.pt"  # its directory is a file: no save can succeed
    with pytest.warns(UserWarning, match="could not save the training checkpoint"):
        result = train_proxy(_model(), digits, TrainConfig(**CFG, checkpoint=str(path)))
    assert result.accuracy == unbroken[0].accuracy and not path.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "a_file"], "no temporary file left"
