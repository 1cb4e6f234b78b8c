"""dvc.yaml cannot go stale: every stage depends on each genzoo file its command can import (genzoo.tools.dag,
genzoo.tools.imports), an edit to one model file changes exactly the stages that import it, and the package has
no import cycle."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from genzoo.models.registry import GENERATIVE, MODULES
from genzoo.params import read_params_file
from genzoo.tools import imports
from genzoo.tools.dag import code_deps, render

DVC = str(Path(sys.executable).parent / "dvc")


def resolved_stages(repo: Path = ROOT) -> dict:
    """DVC's own reading of dvc.yaml (foreach expanded): stage -> (cmd, set of dep paths)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        return {s.name: (s.cmd, {d.def_path for d in s.deps}) for s in dvc_repo.index.stages}


def test_dvc_yaml_is_what_genzoo_dag_writes():
    """Run `genzoo dag` after adding a model or an import; this fails until you do."""
    assert render(ROOT / "dvc.yaml", ROOT / "params.yaml") == (ROOT / "dvc.yaml").read_text()


def test_every_stage_depends_on_each_file_its_code_can_import():
    raw = read_params_file(ROOT / "params.yaml")
    stages = resolved_stages()
    assert {f"train@{n}" for n in GENERATIVE} | {f"train_translation@{n}" for n in GENERATIVE} >= \
        {name for name in stages if name.startswith("train@") or name.startswith("train_translation@")}
    missing = {}
    for name, (cmd, deps) in stages.items():
        needed = set(code_deps(cmd, raw))
        assert needed, name
        if needed - deps:
            missing[name] = sorted(needed - deps)
        extra = {d for d in deps if d.startswith("src/genzoo/") and d.endswith(".py")} - needed
        assert not extra, f"{name} depends on code it never runs: {sorted(extra)}"
    assert not missing, f"stages missing code they import: {missing}"


def test_a_model_that_imports_another_depends_on_it():
    """The gaps that used to exist: PixelRNN builds on PixelCNN's masked convolution, EBGAN on DCGAN's generator."""
    stages = resolved_stages()
    assert "src/genzoo/models/pixelcnn.py" in stages["train@pixelrnn"][1]
    assert "src/genzoo/models/dcgan.py" in stages["train@ebgan"][1]
    assert "src/genzoo/data/captions.py" in stages["train_translation@stackgan"][1]
    assert "src/genzoo/models/pixelcnn.py" not in stages["train@vae"][1]
    for name in ("train@vae", "triplegan", "anogan"):
        assert "src/genzoo/params.py" in stages[name][1]


def test_no_import_cycle():
    assert imports.cycles() == []


def test_a_planted_cycle_is_found(tmp_path):
    package = tmp_path / "genzoo"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "__init__.py").write_text("from genzoo.models import a\n")  # a registry importing its models
    (package / "models" / "a.py").write_text("def f():\n    from genzoo.models import b\n")  # lazy, still an edge
    (package / "models" / "b.py").write_text("import genzoo.models\n")
    (package / "other.py").write_text("from genzoo.models.a import f\n")
    assert imports.cycles(tmp_path) == [["genzoo.models", "genzoo.models.a", "genzoo.models.b"]]
    assert imports.closure(["genzoo.other"], tmp_path) == ["genzoo", "genzoo.models", "genzoo.models.a",
                                                             "genzoo.models.b", "genzoo.other"]


def _md5(path: Path) -> dict:
    data = path.read_bytes()
    return {"hash": "md5", "md5": hashlib.md5(data).hexdigest(), "size": len(data)}


def _with_current_code_hashes(repo: Path) -> None:
    """Make the copy's dvc.lock record today's code files (what `dvc commit` would write for them), so the test
    sees only the edit it makes, whatever code changes the committed lock has not caught up with."""
    lock_file = repo / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text())
    for name, (_, deps) in resolved_stages(repo).items():
        entry = lock["stages"].setdefault(name, {"cmd": "", "deps": [], "outs": []})
        kept = [d for d in entry.get("deps", []) if not d["path"].startswith("src/genzoo/")]
        code = [{"path": p, **_md5(repo / p)} for p in sorted(deps) if p.startswith("src/genzoo/")]
        entry["deps"] = sorted(kept + code, key=lambda d: d["path"])
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))


def _changed_code(repo: Path) -> dict[str, set[str]]:
    """`dvc status`: stage -> its changed code deps (the copy has no data, so data deps show as deleted)."""
    out = subprocess.run([DVC, "status", "--json"], cwd=repo, capture_output=True, text=True, check=True).stdout
    changed = {}
    for stage, entries in json.loads(out).items():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and "changed deps" in entry:
                code = {path for path in entry["changed deps"] if path.startswith("src/")}
                if code:
                    changed[stage] = code
    return changed


def test_editing_one_model_file_changes_exactly_the_stages_that_import_it(tmp_path):
    repo = tmp_path / "repo"
    for rel in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore", ".dvc/config"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, repo / rel)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _with_current_code_hashes(repo)
    assert _changed_code(repo) == {}

    edited = "src/genzoo/models/pixelcnn.py"
    with open(repo / edited, "a") as handle:
        handle.write("\n# an edit\n")
    after = _changed_code(repo)
    importers = {stage for stage, (_, deps) in resolved_stages(repo).items() if edited in deps}
    assert set(after) == importers == {"train@pixelcnn", "train@pixelrnn", "train@pixelrnn_diagonal", "evaluate"}
    assert all(deps == {edited} for deps in after.values())


@pytest.mark.parametrize("name", [n for n, m in MODULES.items() if n in GENERATIVE and n == m])
def test_the_registry_names_each_models_own_file(name):
    assert GENERATIVE[name].__module__ == f"genzoo.models.{MODULES[name]}"
