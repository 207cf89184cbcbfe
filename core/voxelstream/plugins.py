"""Plugin discovery and the registries built from it.

Plugins are found through the ``voxelstream`` entry-point group, first-party ones exactly
like third-party ones. The manager is rebuilt per process from entry points (dask workers do
the same) and never pickled.

Plugins are contained: a plugin that fails to import, or whose hook raises, is recorded
(see :func:`plugin_report`) and skipped, so it cannot break unrelated commands. Two plugins
registering one name is a :class:`~voxelstream.errors.PluginConflictError` naming both,
raised only where that name is looked up; every other name keeps working. A
:class:`~voxelstream.specs.LazySpec` is imported on first lookup, so registration stays cheap.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginConflictError, PluginError, UnknownNameError
from .specs import LazySpec, ModelSpec, ReaderSpec, SourceError, StageSpec, TaskSpec

__all__ = [
    "KINDS",
    "PluginInfo",
    "Registration",
    "get_plugin_manager",
    "plugin_report",
    "plugin_errors",
    "plugin_version",
    "registrations",
    "conflicts",
    "readers",
    "stages",
    "models",
    "tasks",
    "get_stage",
    "get_model_spec",
    "get_task",
    "require",
    "register",
    "reset",
]

# kind -> (hook name, spec type, singular used in messages)
_KINDS: dict[str, tuple[str, type, str]] = {
    "readers": ("voxelstream_readers", ReaderSpec, "reader"),
    "stages": ("voxelstream_stages", StageSpec, "stage"),
    "models": ("voxelstream_models", ModelSpec, "model"),
    "tasks": ("voxelstream_tasks", TaskSpec, "task"),
}
KINDS: tuple[str, ...] = tuple(_KINDS)


@dataclass(frozen=True)
class PluginInfo:
    """What ``voxelstream plugins`` shows for one plugin: ``error`` says why it failed
    (its import, or one of its hooks), ``None`` when it works."""

    name: str
    version: str
    module: str
    error: str | None = None


@dataclass(frozen=True)
class Registration:
    """One name one plugin registers; ``spec`` is the spec or a :class:`LazySpec` not yet loaded."""

    kind: str
    name: str
    plugin: str
    spec: Any

    @property
    def description(self) -> str:
        return getattr(self.spec, "description", "") or ""


class _State:
    pm: pluggy.PluginManager | None = None
    infos: list[PluginInfo] = []
    extra: list[tuple[str, Any]] = []
    hook_errors: dict[str, list[str]] = {}  # plugin -> what its hooks did wrong
    resolved: dict[tuple[str, str], Any] = {}


def _one_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


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
            infos.append(PluginInfo(ep.name, version, ep.value, error=f"cannot be loaded: {_one_line(exc)}"))
            continue
        infos.append(PluginInfo(ep.name, version, ep.value))
    for name, obj in _State.extra:
        try:
            pm.register(obj, name=name)
        except Exception as exc:
            infos.append(PluginInfo(name, "unregistered", repr(obj), error=f"cannot be registered: {_one_line(exc)}"))
            continue
        infos.append(PluginInfo(name, "unregistered", getattr(obj, "__name__", repr(obj))))
    _State.pm, _State.infos = pm, infos
    _State.hook_errors, _State.resolved = {}, {}
    _registrations.cache_clear()
    return pm


def register(plugin: Any, name: str) -> None:
    """Register a plugin object in this process without an entry point (tests, notebooks)."""
    _State.extra.append((name, plugin))
    reset(keep_extra=True)


def reset(keep_extra: bool = False) -> None:
    """Forget the loaded plugins (the next call re-reads entry points)."""
    _State.pm = None
    _State.infos = []
    _State.hook_errors = {}
    _State.resolved = {}
    if not keep_extra:
        _State.extra = []
    _registrations.cache_clear()


def plugin_errors(kinds: Sequence[str] = KINDS) -> dict[str, list[str]]:
    """What went wrong, per failed plugin: its import, or its hooks of ``kinds`` (those
    hooks are called; others are not, so that their work is not paid for)."""
    get_plugin_manager()
    for kind in kinds:
        _registrations(kind)
    out: dict[str, list[str]] = {}
    for info in _State.infos:
        errors = ([info.error] if info.error else []) + _State.hook_errors.get(info.name, [])
        if errors:
            out[info.name] = errors
    return out


def plugin_report() -> list[PluginInfo]:
    """One :class:`PluginInfo` per plugin, with why it failed where it did: its import, or a
    hook that raised or returned something other than specs (every hook is called)."""
    errors = plugin_errors(KINDS)
    return [replace(info, error="; ".join(errors.get(info.name, [])) or None) for info in _State.infos]


def plugin_version(name: str) -> str:
    """The installed version of plugin ``name`` ("unknown" when it has none)."""
    get_plugin_manager()
    for info in _State.infos:
        if info.name == name:
            return info.version
    return "unknown"


def _hook_error(plugin: str, message: str) -> None:
    errors = _State.hook_errors.setdefault(plugin, [])
    if message not in errors:  # a lazy spec failing is met at every listing
        errors.append(message)


@functools.lru_cache(maxsize=None)
def _registrations(kind: str) -> dict[str, tuple[Registration, ...]]:
    hook_name, spec_type, _ = _KINDS[kind]
    pm = get_plugin_manager()
    found: dict[str, list[Registration]] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():  # registration order
        plugin = impl.plugin_name
        try:
            result = impl.function()
            items = list(result or [])
        except Exception as exc:  # contained: the plugin is reported, the others keep working
            _hook_error(plugin, f"failed in {hook_name}(): {_one_line(exc)}")
            continue
        for spec in items:
            if not isinstance(spec, (spec_type, LazySpec)) or not isinstance(getattr(spec, "name", None), str):
                _hook_error(plugin, f"failed in {hook_name}(): returned {type(spec).__name__}, "
                                    f"expected {spec_type.__name__} or LazySpec")
                continue
            found.setdefault(spec.name, []).append(Registration(kind, spec.name, plugin, spec))
    return {name: tuple(regs) for name, regs in found.items()}


def registrations(kind: str) -> dict[str, tuple[Registration, ...]]:
    """Every name of ``kind`` ("readers", "stages", "models" or "tasks") with the plugins
    that register it (more than one is a conflict), without importing any lazy spec."""
    if kind not in _KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(_KINDS)}")
    return dict(_registrations(kind))


def _conflict_message(kind: str, name: str, regs: Sequence[Registration]) -> str:
    names = [repr(r.plugin) for r in regs]
    who = " and ".join(names) if len(names) == 2 else ", ".join(names[:-1]) + " and " + names[-1]
    count = "two" if len(names) == 2 else str(len(names))
    return f"{_KINDS[kind][2]} {name!r} is registered by {count} plugins: {who}; uninstall or disable one of them"


def conflicts() -> list[str]:
    """One message per name that more than one plugin registers (all kinds)."""
    return [
        _conflict_message(kind, name, regs)
        for kind in _KINDS
        for name, regs in _registrations(kind).items()
        if len(regs) > 1
    ]


def _resolve(reg: Registration) -> Any:
    key = (reg.kind, reg.name)
    if key in _State.resolved:
        return _State.resolved[key]
    _, spec_type, singular = _KINDS[reg.kind]
    spec = reg.spec
    if isinstance(spec, LazySpec):
        where = f"{singular} {reg.name!r} of plugin {reg.plugin!r}"
        try:
            spec = spec.load()
        except Exception as exc:
            raise PluginError(f"{where}: cannot import {reg.spec.target}: {_one_line(exc)}") from exc
        if not isinstance(spec, spec_type):
            raise PluginError(f"{where}: {reg.spec.target} is a {type(spec).__name__}, expected {spec_type.__name__}")
        if spec.name != reg.name:
            raise PluginError(f"{where}: {reg.spec.target} is named {spec.name!r}, not {reg.name!r}")
    spec = replace(spec, plugin=reg.plugin)
    _State.resolved[key] = spec
    return spec


def require(kind: str, name: str) -> Registration:
    """Check that exactly one plugin registers ``name`` of ``kind`` (else
    :class:`UnknownNameError` or :class:`PluginConflictError`) without importing a lazily
    registered spec: a fail-fast check before work that may not need the spec at all (a
    pipeline over a store with nothing to do must not import dask for its stages)."""
    reg = _registrations(kind)
    if name not in reg:
        known = ", ".join(sorted(reg)) or "none"
        raise UnknownNameError(f"no {_KINDS[kind][2]} named {name!r} (installed: {known})")
    if len(reg[name]) > 1:
        raise PluginConflictError(_conflict_message(kind, name, reg[name]))
    return reg[name][0]


def _lookup(kind: str, name: str) -> Any:
    return _resolve(require(kind, name))


def _usable(kind: str) -> Iterator[tuple[str, Any]]:
    """Names registered once whose spec loads; the others are left out (they fail on lookup)."""
    for name, regs in _registrations(kind).items():
        if len(regs) == 1:
            try:
                yield name, _resolve(regs[0])
            except PluginError as exc:
                _hook_error(regs[0].plugin, str(exc))


def _conflicted_reader(name: str, regs: Sequence[Registration]) -> ReaderSpec:
    """Stands in for a reader name two plugins register: the files either would claim fail
    with the conflict (one line), and inputs no such file is part of are read as usual."""
    specs = [r.spec for r in regs if isinstance(r.spec, ReaderSpec)]
    message = _conflict_message("readers", name, regs)

    def claims(path: Path) -> bool:
        return any(s.claims(path) for s in specs)

    def discover(files: Sequence[Path], options: Any = None) -> Iterator[SourceError]:
        where = os.path.commonpath([str(f) for f in files]) if files else name
        yield SourceError(where, f"{len(files)} file(s) for reader {name!r}: {message}")

    return ReaderSpec(
        name=name,
        claims=claims,
        discover=discover,
        companions=tuple(c for s in specs for c in s.companions),
        priority=max((s.priority for s in specs), default=0),
        description=message,
        plugin=", ".join(r.plugin for r in regs),
    )


def readers() -> list[ReaderSpec]:
    """All readers, highest priority first. A name two plugins register is kept as a reader
    whose inputs fail with the conflict; a reader whose lazy spec fails to load is left out
    (and reported by :func:`plugin_report`)."""
    found = dict(_usable("readers"))
    for name, regs in _registrations("readers").items():
        if len(regs) > 1:
            found[name] = _conflicted_reader(name, regs)
    return sorted(found.values(), key=lambda r: (-r.priority, r.name))


def stages() -> dict[str, StageSpec]:
    """Every usable stage (loads lazy ones). Conflicting names are left out: see :func:`conflicts`."""
    return dict(_usable("stages"))


def models() -> dict[str, ModelSpec]:
    """Every usable model (loads lazy ones). Conflicting names are left out."""
    return dict(_usable("models"))


def tasks() -> dict[str, TaskSpec]:
    """Every usable task (loads lazy ones). Conflicting names are left out."""
    return dict(_usable("tasks"))


def get_stage(name: str) -> StageSpec:
    """The stage ``name``: call it as ``stage(volume, **params) -> Volume``."""
    return _lookup("stages", name)


def get_model_spec(name: str) -> ModelSpec:
    """The model architecture ``name``."""
    return _lookup("models", name)


def get_task(name: str) -> TaskSpec:
    """The task ``name`` (its commands live under ``voxelstream NAME``)."""
    return _lookup("tasks", name)
