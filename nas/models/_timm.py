"""Our architectures as timm models: ``timm.create_model(name, pretrained=False, ...)``.

Importing ``nas.models`` registers every preset timm lacks (IdentityFormer, RandFormer, the tiny
test presets, and presets registered later); presets timm has keep timm's own entry (same
state-dict layout, and timm's weights). :func:`register_timm` adds any architecture under a new
name, e.g. an exported one (``python -m nas export`` does so in its own process; an export's
``model.py`` does so wherever it is imported).

timm looks entry points up as functions of the module named by their ``__module__`` and appends
their names to its ``__all__``, so the entries live here as module attributes, as in timm.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from timm.models import is_model, model_entrypoint, register_model
from torch import nn

from nas.models import portable
from nas.models.arch import ArchSpec, to_dict
from nas.models.model import build_model, runtime_config, with_overrides
from nas_errors import ConfigError

__all__ = ["register_timm", "register_timm_preset", "register_exports", "timm_names",
           "EXPORT_PATH_ENV"]

#: folders of exports (``python -m nas export --out``), or folders holding them, separated by
#: ``os.pathsep``; importing ``nas.models`` registers every export found there with timm
EXPORT_PATH_ENV = "NAS_EXPORT_PATH"
_NAME_LINE = re.compile(r"^NAME = '([a-z_][a-z0-9_]*)'$", re.M)

_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_OURS: dict[str, Callable[[], ArchSpec]] = {}  # name -> its architecture (presets: lazily)
_PRESETS: set[str] = set()  # the names above that are presets'
#: what reading an architecture from a config.yaml of any shape may raise (a list where a
#: mapping belongs: TypeError; a missing key: KeyError; ...)
_BAD_CONFIG = (ConfigError, ValueError, TypeError, KeyError, AttributeError)
_EXPORTS: dict[str, tuple[str, Any]] = {}  # name -> (folder, config) of register_exports' first


def timm_names() -> list[str]:
    """The names this project has registered with timm, sorted."""
    return sorted(_OURS)


def check_timm_name(name: str) -> str:
    """``name`` if it can name a new timm model: a lowercase identifier that timm does not have
    and no preset uses (a name this project registered may be reused); else
    :class:`ConfigError` saying why."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ConfigError(f"model name must be a lowercase Python identifier (letters, digits, "
                          f"_; timm style, e.g. 'tiny_trial2'); got {name!r}")
    if is_model(name) and name not in _OURS:
        raise ConfigError(f"timm already has a model named {name!r}; choose another name")
    if name in _PRESETS:
        raise ConfigError(f"{name!r} is the name of a preset; choose another name")
    return name


def register_timm(name: str, spec: ArchSpec | Mapping[str, Any]) -> str:
    """Register ``spec`` with timm as ``name``; returns ``name``.

    ``timm.create_model(name, pretrained=False, num_classes=..., img_size=..., in_chans=...,
    drop_rate=..., drop_path_rate=...)`` then builds it (defaults: the spec's own), with a
    ``pretrained_cfg`` for timm's data pipeline; ``checkpoint_path=`` loads weights (e.g. an
    export's ``model.safetensors``). Registering a name again replaces it; a name timm already
    has, or a preset's, raises :class:`ConfigError`.

    Example:
        >>> register_timm("my_hybrid", spec)
        >>> model = timm.create_model("my_hybrid", pretrained=False, num_classes=10)
    """
    check_timm_name(name)
    arch = with_overrides(spec)
    _register(name, lambda: arch, export_config(arch))
    return name


def export_config(spec: ArchSpec) -> dict[str, Any] | None:
    """``spec`` as an exported ``model.py`` holds it in ``CONFIG`` (``runtime_config``, in JSON's
    types): what an entry of timm's registry carries as ``.CONFIG``, so that a ``model.py`` or a
    ``$NAS_EXPORT_PATH`` entry of the same name can tell its own architecture from another.
    None for an architecture no ``model.py`` can hold (a mixer registered with a default that
    is no JSON value, e.g. a class: such a mixer works everywhere but export)."""
    import json

    try:
        return json.loads(json.dumps(runtime_config(spec)))
    except (TypeError, ValueError):
        return None


def entry_config(name: str) -> Any:
    """The ``CONFIG`` of timm's entry ``name``: an entry registered by :func:`register_timm` or
    by an exported ``model.py`` (its ``.CONFIG``; a ``model.py`` exported before that attribute
    existed: its module's ``CONFIG``); None for timm's own models and the presets."""
    entry = model_entrypoint(name)
    return getattr(entry, "CONFIG", getattr(entry, "__globals__", {}).get("CONFIG"))


def _is_the_preset(name: str, arch: Any) -> bool:
    """Whether ``arch`` (an export's ``config.yaml``) is the preset ``name``, its
    ``num_classes`` and ``img_size`` aside (``export --preset NAME`` under the preset's name)."""
    from nas.models.arch import arch_hash
    from nas.models.presets import get_preset  # presets.py imports this module

    try:
        preset = get_preset(name)
        spec = with_overrides(arch, num_classes=preset.num_classes, img_size=preset.img_size)
    except _BAD_CONFIG:  # no preset's name, or no architecture (said below)
        return False
    return arch_hash(spec) == arch_hash(preset)


def path_export_clash(name: str, spec: ArchSpec) -> str | None:
    """The folder of the export ``$NAS_EXPORT_PATH`` registered as ``name`` in this process, if
    its architecture is not ``spec``'s (an export of ``name`` would clash with it there)."""
    first = _EXPORTS.get(name)
    if first is None:
        return None
    try:
        theirs = export_config(with_overrides(first[1]))
    except _BAD_CONFIG:
        return first[0]
    return None if theirs == export_config(spec) else first[0]


def register_exports(paths: str | None = None) -> list[str]:
    """Register with timm the exports found in ``paths`` (default ``$NAS_EXPORT_PATH``).

    Each entry is an export's folder (holding ``config.yaml`` and ``model.py``) or a folder of
    such folders. The name is the export's (``NAME`` in its ``model.py``), the architecture its
    ``config.yaml``. An entry that is no export, or an export whose name timm already has, is
    skipped with a warning: importing the package never fails because of this variable (an
    export whose ``model.py`` was imported already, or a preset's export under the preset's own
    name, is skipped without one: timm has it). So is
    an export whose name an earlier export (earlier in the path, or registered by an earlier
    call) gave another architecture: the first keeps the name, as ``PATH`` finds the first
    program of a name. Returns the names registered.
    """
    import os
    from pathlib import Path

    import yaml

    raw = os.environ.get(EXPORT_PATH_ENV, "") if paths is None else paths
    found: list[str] = []
    for entry in filter(None, (p.strip() for p in raw.split(os.pathsep))):
        root = Path(entry).expanduser()
        dirs = [root] if (root / "config.yaml").is_file() else (
            sorted(d for d in root.iterdir() if (d / "config.yaml").is_file())
            if root.is_dir() else [])
        if not dirs:
            warnings.warn(f"{EXPORT_PATH_ENV}: {str(root)!r} holds no export", stacklevel=2)
        for d in dirs:
            try:
                match = _NAME_LINE.search((d / "model.py").read_text())
                if match is None:
                    raise ConfigError("its model.py names no model (NAME = '...')")
                name, arch = match.group(1), yaml.safe_load((d / "config.yaml").read_text())
                if is_model(name) and _is_the_preset(name, arch):
                    continue  # a preset exported under its own name, which builds it already
                first = _EXPORTS.get(name)
                if first is not None and first[1] != arch:
                    raise ConfigError(f"its name {name!r} is already export {first[0]!r}'s, "
                                      "another architecture or size (export one of them again "
                                      "with another --name)")
                if is_model(name) and name not in _OURS:
                    config = entry_config(name)  # an imported model.py's (None: timm's own)
                    if config is None or config != export_config(with_overrides(arch)):
                        raise ConfigError(
                            f"timm already has a model named {name!r}" + (
                                " from an export's model.py, another architecture or size"
                                if config is not None else "") +
                            " (export it again with another --name)")
                    # that model.py is this export's: timm has it already
                else:
                    found.append(register_timm(name, arch))
                _EXPORTS.setdefault(name, (str(d), arch))
            except (*_BAD_CONFIG, OSError, yaml.YAMLError) as e:
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                if not isinstance(e, (ConfigError, OSError, yaml.YAMLError)):
                    why = f"its config.yaml is no architecture ({type(e).__name__}: {why})"
                warnings.warn(f"{EXPORT_PATH_ENV}: export {str(d)!r} not registered: {why}",
                              stacklevel=2)
    return found


def registered_here(name: str) -> bool:
    """Whether timm's entry ``name`` is this project's (a preset timm lacks, or an export
    registered in this process), not timm's own."""
    return name in _OURS


def register_timm_preset(name: str) -> bool:
    """Register the preset ``name`` with timm unless timm has a model of that name (then it
    warns and keeps timm's); True if registered. Called by ``register_preset``."""
    if is_model(name) and name not in _OURS:
        warnings.warn(f"timm already has a model named {name!r}; the preset of that name is not "
                      "registered with timm (timm's own is kept)", stacklevel=3)
        return False
    from nas.models.presets import get_preset  # presets.py imports this module

    _register(name, lambda: get_preset(name))
    _PRESETS.add(name)
    return True


def _register(name: str, arch: Callable[[], ArchSpec], config: Any = None) -> None:
    entry = _entry(name, arch)
    if config is not None:
        entry.CONFIG = config  # type: ignore[attr-defined]  # see export_config
    setattr(sys.modules[__name__], name, entry)
    with warnings.catch_warnings():
        if name in _OURS:  # replacing our own entry is what was asked for
            warnings.filterwarnings("ignore", message=f"Overwriting {name} in registry")
        register_model(entry)
    _OURS[name] = arch


def _entry(name: str, arch: Callable[[], ArchSpec]) -> Callable[..., nn.Module]:
    def entry(pretrained: bool = False, *, num_classes: int | None = None,
              img_size: int | None = None, in_chans: int | None = None, drop_rate: float = 0.0,
              drop_path_rate: float = 0.0, pretrained_cfg: Any = None,
              pretrained_cfg_overlay: dict[str, Any] | None = None, cache_dir: Any = None,
              device: Any = None, **unused: Any) -> nn.Module:
        if pretrained:
            raise ConfigError(f"{name}: no pretrained weights (an architecture of this project); "
                              "use pretrained=False, and checkpoint_path=... to load weights")
        if unused:
            raise ConfigError(f"{name}: unsupported model argument(s) {sorted(unused)}; allowed: "
                              "num_classes, img_size, in_chans, drop_rate, drop_path_rate")
        spec = arch()
        if in_chans is not None:
            spec = dataclasses.replace(spec, in_chans=in_chans)
        model = build_model(spec, num_classes=num_classes, img_size=img_size,
                            drop_rate=drop_rate, drop_path_rate=drop_path_rate, device=device)
        cfg = portable.timm_cfg(to_dict(with_overrides(spec, num_classes=num_classes,
                                                       img_size=img_size)))
        model.pretrained_cfg = model.default_cfg = {**cfg, **(pretrained_cfg_overlay or {}),
                                                    "architecture": name}
        return model

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"{name}: an architecture of this project (no pretrained weights)."
    return entry
