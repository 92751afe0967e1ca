"""Suites: YAML files that declare cases as a product of axes.

::

    name: smoke                       # optional, defaults to the file name
    models:   [gluon_resnet50_v1b]
    backends: [torch]
    devices:  [cpu]
    settings: {batch_size: 16, steps: 20, width: 0.25, image_size: 64}
    matrix:   {data: [synthetic, tiny]}     # extra axes: lists of values for one setting
    overrides:                              # per-case settings, applied in order
      - match: {backend: torch, data: tiny}
        settings: {steps: 40}
    seeds:    5                             # every case once per seed, 0-4 (or a list of seeds)
    exclude:                                # cases dropped from the product
      - {backend: torch, device: ascend}
    include:                                # cases beside the product (named by their single-value settings)
      - {models: [gluon_resnet50_v1b], backends: [torch], devices: [cpu], settings: {scenario: data, data: tiny}}
    cluster: {partition: gpu, devices_per_node: 8}   # for harness run --on slurm (harness.run.slurm.cluster)

Only safe YAML is read (:func:`harness.files.load_yaml`: no key twice, aliases bounded before expansion). Every
problem is a :class:`HarnessError` naming the file and key, with the nearest valid name where there is one. ``${VAR}``
and ``${VAR:-default}`` in string settings expand from the environment; ``--set key=value`` on the command line
applies last. Relative ``data_root``, ``weights`` and ``model_file`` are taken from the folder ``harness run`` is
started in (a case runs in a folder of its own); a missing ``weights`` file, like a missing ``data_root``, stops the
suite at load. ``seeds:`` runs every case once per seed (:mod:`harness.run.seeds`).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.loading import backend_entry_points
from harness.config import DEVICES, SETTING_NAMES, Case, Settings, coerce_settings
from harness.data.load_checks import check_data
from harness.errors import HarnessError, near
from harness.files import load_yaml, read_text
from harness.models.recipes import resolve_recipe
from harness.models.specs import MODELS, check_batch
from harness.run.scenarios import check_settings
from harness.run.seeds import suite_seeds, with_seeds
from harness.run.slurm.cluster import Cluster, load_cluster

__all__ = ["Suite", "load_suite", "parse_set", "select_cases"]

TOP_KEYS = ("name", "description", "models", "backends", "devices", "settings", "matrix", "overrides", "exclude",
            "include", "seeds", "cluster")
AXES = ("model", "backend", "device")
#: Settings that are paths: a case runs in its own folder, so a relative one is made absolute here, from the folder
#: ``harness run`` was started in.
PATH_SETTINGS = ("data_root", "weights", "model_file")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str
    cases: tuple[Case, ...]
    selection: tuple[str, ...] = ()  # the --only globs that chose these cases (empty: all); records name them
    cluster: Cluster = dataclasses.field(default_factory=Cluster)  # the cluster: section (harness.run.slurm.cluster)


def _expand_env(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise HarnessError(f"{where}: environment variable {var} is not set (use ${{{var}:-default}} for a default)")

    return _ENV.sub(sub, value)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["batch_size=8", "data=tiny"]`` -> typed dict (values parsed as YAML scalars); ``cluster.KEY=VALUE`` items
    go, unchecked until the suite loads, under ``"cluster"``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HarnessError(f"--set {item!r}: expected key=value")
        try:
            out[key] = load_yaml(raw, f"--set {key}") if raw.strip() else ""
        except HarnessError:  # not YAML: the text itself
            out[key] = raw
    cluster = {k.removeprefix("cluster."): out.pop(k) for k in list(out) if k.startswith("cluster.")}
    return {**coerce_settings(out, "--set"), **({"cluster": cluster} if cluster else {})}


def _as_list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise HarnessError(f"{where}: {key}: expected a list, got {type(value).__name__}")
    return value


def _check_names(values: list[Any], valid: Any, where: str, kind: str, hint: str = "") -> list[str]:
    for i, v in enumerate(values):
        if not isinstance(v, str) or v not in valid:
            raise HarnessError(f"{where}[{i}]: unknown {kind} '{v}'{near(str(v), valid)} "
                               f"(available: {', '.join(sorted(valid)) or 'none'}){hint}")
    return values


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HarnessError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _included(doc: dict[str, Any], where: str) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """The ``include`` entries: cases beside the product, each ``{models, backends, devices, settings}`` (one value
    or a list per axis); a case's name adds each of its settings that is a single value."""
    out = []
    for i, entry in enumerate(_as_list(doc, "include", where)):
        iw = f"{where}: include[{i}]"
        entry = _mapping(entry, iw)
        for key in entry:
            if key not in ("models", "backends", "devices", "settings"):
                raise HarnessError(f"{iw}.{key}: unknown key{near(key, ('models', 'backends', 'devices', 'settings'))}")
        axes = [_check_names(_as_list(entry, key, iw), valid, f"{iw}.{key}", key[:-1])
                for key, valid in (("models", MODELS), ("backends", backend_entry_points()), ("devices", DEVICES))]
        if not all(axes):
            raise HarnessError(f"{iw}: needs models, backends and devices")
        settings = coerce_settings(_mapping(entry.get("settings"), f"{iw}.settings"), f"{iw}.settings")
        named = {k: v for k, v in settings.items() if not isinstance(v, (list, tuple, dict))}
        rest = {k: v for k, v in settings.items() if k not in named}
        out += [(m, b, d, named, rest) for m, b, d in itertools.product(*axes)]
    return out


def _check_match(match: dict[str, Any], where: str) -> None:
    for key in match:
        if key not in AXES and key not in SETTING_NAMES:
            raise HarnessError(f"{where}.{key}: unknown key{near(key, AXES + SETTING_NAMES)}")


def _matches(match: dict[str, Any], axes: dict[str, Any]) -> bool:
    def same(want: Any, have: Any) -> bool:
        if isinstance(want, list):
            return any(same(w, have) for w in want)
        return want == have or (isinstance(have, tuple) and list(have) == want)
    return all(same(v, axes.get(k)) for k, v in match.items())


def load_suite(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None,
               check_backends: bool = True) -> Suite:
    """Read, validate and expand a suite file into cases; with ``check_backends`` every case is also checked
    against what its backend declares (:mod:`harness.run.validate`; each backend probed once, in a child)."""
    p = Path(path)
    where = str(path)
    doc = load_yaml(read_text(p, "suite file"), where)
    if doc is None:
        raise HarnessError(f"{where}: the suite is empty")
    doc = _mapping(doc, where)
    for key in doc:
        if key not in TOP_KEYS:
            raise HarnessError(f"{where}: {key}: unknown key{near(key, TOP_KEYS)}")

    name = doc.get("name", p.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise HarnessError(f"{where}: name: {name!r} must be letters, digits, '.', '_' or '-'")
    backends_installed = backend_entry_points()
    models = _check_names(_as_list(doc, "models", where), MODELS, f"{where}: models", "model")
    backends = _check_names(_as_list(doc, "backends", where), backends_installed, f"{where}: backends",
                            "backend", "; install one with pip install -e '.[NAME]'")
    devices = _check_names(_as_list(doc, "devices", where), DEVICES, f"{where}: devices", "device")

    base = coerce_settings(_mapping(doc.get("settings"), f"{where}: settings"), f"{where}: settings")
    matrix_raw = _mapping(doc.get("matrix"), f"{where}: matrix")
    matrix: dict[str, list[Any]] = {}
    for key, values in matrix_raw.items():
        if not isinstance(values, list) or not values:
            raise HarnessError(f"{where}: matrix.{key}: expected a non-empty list of values")
        matrix[key] = [coerce_settings({key: v}, f"{where}: matrix")[key] for v in values]

    rules = []
    for i, rule in enumerate(_as_list(doc, "overrides", where)):
        rw = f"{where}: overrides[{i}]"
        rule = _mapping(rule, rw)
        for key in rule:
            if key not in ("match", "settings"):
                raise HarnessError(f"{rw}.{key}: unknown key{near(key, ('match', 'settings'))}")
        match = _mapping(rule.get("match"), f"{rw}.match")
        _check_match(match, f"{rw}.match")
        rules.append((match, coerce_settings(_mapping(rule.get("settings"), f"{rw}.settings"), f"{rw}.settings")))
    excludes = []
    for i, rule in enumerate(_as_list(doc, "exclude", where)):
        match = _mapping(rule, f"{where}: exclude[{i}]")
        _check_match(match, f"{where}: exclude[{i}]")
        excludes.append(match)
    cli = dict(overrides or {})
    cluster = load_cluster(doc.get("cluster"), cli.pop("cluster", {}), where)

    cases: list[Case] = []
    keys = list(matrix)
    used = [False] * len(rules)
    # (model, backend, device, settings that name the case, others): the product, then `include`
    todo: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
        (model, backend, device, dict(zip(keys, combo)), {})
        for model, backend, device, *combo in itertools.product(models, backends, devices, *matrix.values())]
    todo = with_seeds(todo + _included(doc, where), suite_seeds(doc, cli, where))
    for model, backend, device, variant, unnamed in todo:
        axes: dict[str, Any] = {"model": model, "backend": backend, "device": device}
        settings = {**base, **variant, **unnamed}
        if any(_matches(ex, {**settings, **axes}) for ex in excludes):
            continue
        for r, (match, extra) in enumerate(rules):
            if _matches(match, {**settings, **axes}):
                settings.update(extra)
                used[r] = True
        settings.update(cli)
        label = "-".join([model, backend, device] + [f"{k}={v}" for k, v in variant.items()])
        settings = {k: _expand_env(v, f"{where}: case {label}: {k}") for k, v in settings.items()}
        settings.update({k: os.path.abspath(settings[k]) for k in PATH_SETTINGS if settings.get(k)})
        if settings.get("recipe"):
            recipe = resolve_recipe(settings["recipe"], model, backend, settings.get("devices", 1),
                                    f"{where}: case {label}")
            settings = {**recipe, **{k: v for k, v in settings.items() if k != "recipe"}, "recipe": recipe["recipe"]}
        check_data(settings, f"{where}: case {label}")
        if settings.get("weights") and not os.path.isfile(settings["weights"]):
            raise HarnessError(f"{where}: case {label}: weights '{settings['weights']}': no such file")
        check_batch(settings.get("batch_size", Settings.batch_size), MODELS[model].repeats, model,
                    f"{where}: case {label}")
        try:
            made = Settings(**settings)
            check_settings(made)
        except HarnessError as exc:
            raise HarnessError(f"{where}: case {label}: {str(exc).removeprefix('settings.')}") from None
        cases.append(Case(name=label, model=model, backend=backend, device=device, settings=made, variant=variant))
    if not cases:
        raise HarnessError(f"{where}: the suite has no cases (models, backends or devices empty, or all excluded)")
    if len({c.name for c in cases}) != len(cases):
        raise HarnessError(f"{where}: two cases have the same name; add the differing setting to matrix")
    for r, ok in enumerate(used):
        if not ok:
            match = rules[r][0]
            hint = "".join(near(str(v), {"model": models, "backend": backends, "device": devices}.get(k, []))
                           for k, v in match.items() if not isinstance(v, list))
            raise HarnessError(f"{where}: overrides[{r}].match {match}: matches no case{hint}")
    if check_backends:
        from harness.run.validate import check_cases

        check_cases(cases, where)
    return Suite(name=name, path=str(path), description=str(doc.get("description", "")), cases=tuple(cases),
                 cluster=cluster)


def select_cases(suite: Suite, patterns: list[str]) -> Suite:
    """The suite's cases whose name matches any glob in ``patterns`` (``--only``)."""
    cases = tuple(c for c in suite.cases if any(fnmatch.fnmatchcase(c.name, p) for p in patterns))
    if not cases:
        names = [c.name for c in suite.cases]
        raise HarnessError(f"{suite.path}: --only {' '.join(patterns)}: no case matches{near(patterns[0], names)} "
                           f"(cases: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")
    return dataclasses.replace(suite, cases=cases, selection=tuple(patterns))
