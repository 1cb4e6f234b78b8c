"""`genzoo dag`: the parts of dvc.yaml that follow from the code, filled in so they cannot go stale.

dvc.yaml is written by hand (commands, outputs, params, data deps, comments) except for what this fills in:
- every stage's code deps: the genzoo files its command can run (genzoo.tools.imports: the closure of the CLI's
  module level, the registry, the stage module `genzoo.stages.<command>`, and the registry models the stage
  module's `models_used` names), and nothing else;
- the model lists that follow from the registry: the items of the `train` and `train_translation` foreach (a
  model that declares a derived data set learns in train_translation; each item's `network` is the frozen network
  its losses look through, or the evaluator again), the `models/<name>` deps of
  `evaluate` and the `metrics/<name>.json` and `metrics/figures/<name>` deps of `report`.

A foreach cannot interpolate a list (DVC checks the schema before it resolves), so the files every item shares
are listed once and each item names its own extra files in slots `code1`..`codeK`; an item with fewer extras
repeats its last one (DVC takes a repeated dep as one). `genzoo dag --check` (and the test suite) fails when
dvc.yaml differs from what this writes.
"""

from __future__ import annotations

import importlib
import io
import shlex
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from genzoo.engine.errors import GenzooError
from genzoo.models.registry import EVALUATOR, FROZEN, GENERATIVE, MODULES
from genzoo.params import read_params_file
from genzoo.tools.imports import closure, files

CODE_PREFIX = "src/genzoo/"
SLOT = "code"
SHARED = ("genzoo.cli", "genzoo.models.registry")  # what every command runs before its stage
FOREACH = {"train": "base", "train_translation": "derived"}  # foreach stage -> which registry models are its items


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments and order survive
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def data_folder(name: str) -> str | None:
    """The data folder a model learns from beside data/processed: its derived set's, or None (the base images)."""
    from genzoo.data.derived import BESIDE

    dataset = GENERATIVE[name].dataset
    if dataset is None:
        return None
    return f"data/{dataset}" if dataset in BESIDE else "data/derived"


def stage_modules(cmd: str, raw: dict) -> list[str]:
    """The genzoo modules `genzoo <command> [target]` starts from: the shared ones, the stage module, and the
    files of the registry models that module says it runs."""
    words = shlex.split(cmd)
    if len(words) < 2 or words[0] != "genzoo":
        raise GenzooError(f"dvc.yaml: stage command {cmd!r} is not `genzoo <command> ...`")
    command, target = words[1], (words[2] if len(words) > 2 and not words[2].startswith("-") else None)
    module = f"genzoo.stages.{command}"
    try:
        stage = importlib.import_module(module)
    except ModuleNotFoundError:
        raise GenzooError(f"dvc.yaml: `genzoo {command}` has no stage module {module}") from None
    used = stage.models_used(raw, target) if hasattr(stage, "models_used") else []
    return [*SHARED, module, *(f"genzoo.models.{MODULES[name]}" for name in used)]


def code_deps(cmd: str, raw: dict) -> list[str]:
    return files(closure(stage_modules(cmd, raw), top_level=["genzoo.cli"]))


def _without_managed(deps: CommentedSeq, managed) -> CommentedSeq:
    for i in reversed(range(len(deps))):
        if managed(str(deps[i])):
            del deps[i]
    return deps


def _is_code(dep: str) -> bool:
    """A dep this fills in: a Python file of the package, or an item's code slot (data files stay as written)."""
    return (dep.startswith(CODE_PREFIX) and dep.endswith(".py")) or dep.startswith("${item." + SLOT)


def _fill_foreach(name: str, stage: CommentedMap, raw: dict) -> None:
    derived = FOREACH[name] == "derived"
    keys = [n for n in GENERATIVE if (data_folder(n) is not None) == derived]
    cmd = stage["do"]["cmd"]
    per_item = {key: code_deps(cmd.replace("${key}", key), raw) for key in keys}
    shared = sorted(set.intersection(*(set(v) for v in per_item.values())))
    extras = {key: [f for f in deps if f not in shared] for key, deps in per_item.items()}
    slots = max(len(v) for v in extras.values())
    items = CommentedMap()
    for key in keys:
        item = CommentedMap()
        if derived:
            item["data"] = data_folder(key)
        item["network"] = f"models/{GENERATIVE[key].perceptual_network_for(raw.get(key) or {}) or EVALUATOR}"
        own = extras[key] or shared[:1]
        for i in range(slots):
            item[f"{SLOT}{i + 1}"] = own[min(i, len(own) - 1)]
        items[key] = item
    stage["foreach"] = items
    deps = _without_managed(stage["do"]["deps"], _is_code)
    deps.extend([*shared, *(f"${{item.{SLOT}{i + 1}}}" for i in range(slots))])


def _fill_stage(name: str, stage: CommentedMap, raw: dict) -> None:
    deps = stage.get("deps")
    if deps is None:
        deps = stage["deps"] = CommentedSeq()
    if name == "evaluate":
        model_dirs = {f"models/{n}" for n in MODULES}
        _without_managed(deps, lambda d: d in model_dirs)
        position = next((i for i, d in enumerate(deps) if str(d).startswith(CODE_PREFIX)), len(deps))
        for offset, n in enumerate([EVALUATOR, *GENERATIVE]):
            deps.insert(position + offset, f"models/{n}")
    if name == "report":
        made = {p for n in MODULES for p in (f"metrics/{n}.json", f"metrics/figures/{n}")}
        _without_managed(deps, lambda d: d in made)
        position = next((i for i, d in enumerate(deps) if str(d).startswith(CODE_PREFIX)), len(deps))
        for offset, path in enumerate([f"metrics/{n}.json" for n in (*FROZEN, *GENERATIVE)]
                                      + [f"metrics/figures/{n}" for n in GENERATIVE]):
            deps.insert(position + offset, path)
    _without_managed(deps, _is_code)
    deps.extend(code_deps(stage["cmd"], raw))


def render(dvc_yaml: Path, params: Path) -> str:
    """dvc.yaml as it should be: the file's own text with the code deps and registry lists filled in."""
    yaml = _yaml()
    doc = yaml.load(dvc_yaml.read_text())
    raw = read_params_file(params)
    for name, stage in doc["stages"].items():
        if name in FOREACH:
            _fill_foreach(name, stage, raw)
        elif "foreach" in stage or "matrix" in stage:
            raise GenzooError(f"dvc.yaml: stage {name} loops over something genzoo dag does not know")
        else:
            _fill_stage(name, stage, raw)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def check_or_write(dvc_yaml: Path, params: Path, check: bool) -> None:
    want = render(dvc_yaml, params)
    if dvc_yaml.read_text() == want:
        print(f"{dvc_yaml}: up to date")
        return
    if check:
        raise GenzooError(f"{dvc_yaml}: its code deps or model lists are stale; run `genzoo dag` to rewrite them")
    dvc_yaml.write_text(want)
    print(f"{dvc_yaml}: rewritten")
