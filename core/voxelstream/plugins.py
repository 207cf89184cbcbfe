"""Plugin discovery and the registries built from it.

Plugins are found through the ``voxelstream`` entry-point group, first-party ones exactly
like third-party ones. A plugin that fails to import is recorded (see
:func:`plugin_report`) and skipped, so it cannot break unrelated commands. The manager is
rebuilt per process from entry points (dask workers do the same) and never pickled.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import traceback
from dataclasses import dataclass, replace
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginConflictError, UnknownNameError
from .specs import ModelSpec, ReaderSpec, StageSpec, TaskSpec

__all__ = [
    "PluginInfo",
    "get_plugin_manager",
    "plugin_report",
    "plugin_version",
    "readers",
    "stages",
    "models",
    "tasks",
    "get_stage",
    "get_model_spec",
    "register",
    "reset",
]

_KINDS = {
    "readers": ("voxelstream_readers", ReaderSpec),
    "stages": ("voxelstream_stages", StageSpec),
    "models": ("voxelstream_models", ModelSpec),
    "tasks": ("voxelstream_tasks", TaskSpec),
}


@dataclass(frozen=True)
class PluginInfo:
    """What ``voxelstream plugins`` shows for one entry point."""

    name: str
    version: str
    module: str
    error: str | None = None


class _State:
    pm: pluggy.PluginManager | None = None
    infos: list[PluginInfo] = []
    extra: list[tuple[str, Any]] = []


def _dist_version(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else "unknown"


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    if _State.pm is not None:
        return _State.pm
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for ep in sorted(md.entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        version = _dist_version(ep)
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not break the others
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            infos.append(PluginInfo(ep.name, version, ep.value, error=last))
            continue
        infos.append(PluginInfo(ep.name, version, ep.value))
    for name, obj in _State.extra:
        pm.register(obj, name=name)
        infos.append(PluginInfo(name, "unregistered", getattr(obj, "__name__", repr(obj))))
    _State.pm, _State.infos = pm, infos
    _registry.cache_clear()
    return pm


def register(plugin: Any, name: str) -> None:
    """Register a plugin object in this process without an entry point (tests, notebooks)."""
    _State.extra.append((name, plugin))
    reset(keep_extra=True)


def reset(keep_extra: bool = False) -> None:
    """Forget the loaded plugins (the next call re-reads entry points)."""
    _State.pm = None
    _State.infos = []
    if not keep_extra:
        _State.extra = []
    _registry.cache_clear()


def plugin_report() -> list[PluginInfo]:
    """One :class:`PluginInfo` per plugin, with its import error where it failed."""
    get_plugin_manager()
    return list(_State.infos)


def plugin_version(name: str) -> str:
    """The installed version of plugin ``name`` ("unknown" when it has none)."""
    for info in plugin_report():
        if info.name == name:
            return info.version
    return "unknown"


@functools.lru_cache(maxsize=None)
def _registry(kind: str) -> dict[str, Any]:
    hook_name, spec_type = _KINDS[kind]
    pm = get_plugin_manager()
    hook = getattr(pm.hook, hook_name)
    found: dict[str, Any] = {}
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name
        result = impl.function()
        for spec in result or []:
            if not isinstance(spec, spec_type):
                raise TypeError(
                    f"plugin {plugin_name!r}: {hook_name}() returned {type(spec).__name__}, "
                    f"expected {spec_type.__name__}"
                )
            spec = replace(spec, plugin=plugin_name)
            if spec.name in found:
                raise PluginConflictError(
                    f"{kind[:-1]} {spec.name!r} is registered by two plugins: "
                    f"{found[spec.name].plugin!r} and {plugin_name!r}; uninstall or disable one"
                )
            found[spec.name] = spec
    return found


def readers() -> list[ReaderSpec]:
    """All readers, highest priority first."""
    return sorted(_registry("readers").values(), key=lambda r: (-r.priority, r.name))


def stages() -> dict[str, StageSpec]:
    return dict(_registry("stages"))


def models() -> dict[str, ModelSpec]:
    return dict(_registry("models"))


def tasks() -> dict[str, TaskSpec]:
    return dict(_registry("tasks"))


def _lookup(kind: str, name: str) -> Any:
    reg = _registry(kind)
    if name not in reg:
        known = ", ".join(sorted(reg)) or "none"
        raise UnknownNameError(f"no {kind[:-1]} named {name!r} (installed: {known})")
    return reg[name]


def get_stage(name: str) -> StageSpec:
    """The stage ``name``: call it as ``stage(volume, **params) -> Volume``."""
    return _lookup("stages", name)


def get_model_spec(name: str) -> ModelSpec:
    return _lookup("models", name)
