"""The layout's rules (docs/ARCHITECTURE.md), checked on the source: no import circle, lower layers never import
higher ones, and the light modules that data_prep shares import neither torch nor Lightning.

Every import counts, at module level or inside a function: a lazy import still makes the importer depend on what it
imports (it only delays the cost). The few that break a rule on purpose are listed in ``ALLOWED``, with the reason.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("videonorm", "data_prep")

# (importer, imported) -> why this import may break the layers' rules
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions, resolved to full names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files} - {name} for name, path in files.items()}


def test_no_import_circle(graph):
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(dep):] + [node, dep])
                                     if dep in trail else f"import circle through {node} -> {dep}")
            if dep not in state:
                visit(dep, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


# (importer prefix, forbidden prefixes): lower layers never import higher ones
LAYERS = [
    ("videonorm.models", ("videonorm.data", "videonorm.train", "videonorm.results", "videonorm.bench")),
    ("videonorm.data", ("videonorm.models", "videonorm.train", "videonorm.results", "videonorm.bench")),
    ("videonorm.results", ("videonorm.train", "videonorm.data", "videonorm.bench")),
    ("videonorm.files", ("videonorm.",)),
    # naming and comparing runs reads the model tables, which import no torch (test_tables_load_no_torch)
    ("videonorm.identity", ("videonorm.data", "videonorm.train", "videonorm.results", "videonorm.bench",
                            "videonorm.files", "videonorm.record", "videonorm.models.norm.build",
                            "videonorm.models.i3d", "videonorm.models.init", "videonorm.models.inflate",
                            "videonorm.models.pretrained", "videonorm.models.residual")),
    ("videonorm.record", ("videonorm.",)),
    ("videonorm.metric_keys", ("videonorm.",)),
    ("videonorm.commands", ("videonorm.",)),
]


@pytest.mark.parametrize("importer, forbidden", LAYERS)
def test_layers(graph, importer, forbidden):
    for module, deps in graph.items():
        if module == importer or module.startswith(importer + "."):
            bad = sorted(d for d in deps if d.startswith(forbidden) and not d.startswith(importer)
                         and (module, d) not in ALLOWED)
            assert not bad, f"{module} imports {bad}"


def test_every_allowed_exception_is_still_needed(graph):
    for importer, imported in ALLOWED:
        assert imported in graph[importer], f"{importer} no longer imports {imported}: remove it from ALLOWED"


# videonorm runs kinetics-prep's code in these modules only, each inside the function that needs it: the demo
# prepares its data with kinetics-prep, bench prep measures trim, and the bench's test videos are encoded as trim does
DATA_PREP_USERS = {"videonorm.demo", "videonorm.bench.prep", "videonorm.bench.videos"}
# scripts/: tools beside the package, on its public modules: (script) -> the project modules it imports
SCRIPT_IMPORTS = {"scripts.decode_memory": {"videonorm.data.video", "videonorm.bench.videos"}}


def test_videonorm_imports_data_prep_only_where_documented(graph):
    users = {m for m, deps in graph.items()
             if m.startswith("videonorm.") and any(d.startswith("data_prep.") for d in deps)}
    assert users == DATA_PREP_USERS


def test_scripts_import_only_what_is_documented(graph):
    scripts = {_module_name(p): p for p in (ROOT / "scripts").glob("*.py")}
    assert set(scripts) >= set(SCRIPT_IMPORTS)
    for name, path in scripts.items():
        assert {m for m in _imports(path) if m in graph} == SCRIPT_IMPORTS.get(name, set()), name


def test_data_prep_imports_only_the_shared_modules(graph):
    # videonorm.data.video is the decoding training uses: verify checks videos through it (imported in the function
    # that decodes, so the other steps do not load torch)
    # videonorm.commands: the one way a subcommand is dispatched (standard library only), kinetics-prep's too
    allowed = {"videonorm", "videonorm.files", "videonorm.data", "videonorm.data.manifest", "videonorm.data.decoders",
               "videonorm.data.video", "videonorm.commands"}
    for path in (ROOT / "data_prep").rglob("*.py"):
        found = {m for m in _imports(path) if m in graph and m.startswith("videonorm")}
        assert found <= allowed, (path, found - allowed)


def _loaded_after(code: str, heavy: tuple[str, ...]) -> list[str]:
    """Which of ``heavy`` a fresh interpreter has loaded after running ``code``."""
    code += f"; import sys; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])  # the printed list of names


def test_decoding_imports_no_lightning():
    # kinetics-prep verify decodes through videonorm.data.video, every backend loaded, without the training stack;
    # and kinetics-prep itself starts without torch
    code = ("import sys, data_prep.cli; assert 'torch' not in sys.modules; "
            "import data_prep.verify, videonorm.data.video; from videonorm.data.decoders import available_backends; "
            "available_backends()")
    assert _loaded_after(code, ("pytorch_lightning", "lightning", "wandb", "torchvision")) == []


def test_tables_load_no_torch():
    # the model spec and the backbone and norm tables are what run identity (names, compare's cells) asks: a process
    # that names a run or reads the tables never loads torch
    code = ("import videonorm.identity, videonorm.models; from videonorm.models.norm import SCHEMES, uses_groups; "
            "from videonorm.models import BACKBONES, ModelSpec; uses_groups('gn')")
    assert _loaded_after(code, ("torch", "pytorch_lightning", "pytorchvideo")) == []


@pytest.mark.parametrize("module", ["videonorm/files.py", "videonorm/identity.py", "videonorm/record.py",
                                    "videonorm/metric_keys.py", "videonorm/commands.py",
                                    "videonorm/data/manifest.py", "videonorm/__init__.py", "videonorm/data/__init__.py",
                                    "videonorm/data/decoders/__init__.py", "videonorm/models/__init__.py",
                                    "videonorm/models/spec.py", "videonorm/models/registry.py",
                                    "videonorm/models/norm/__init__.py", "videonorm/models/norm/schemes.py"])
def test_shared_modules_stay_light(module):
    heavy = {m for m in _imports(ROOT / module) if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning",
                                                                       "torchvision", "av", "decord", "torchcodec",
                                                                       "wandb")}
    assert not heavy, f"{module} imports {heavy}"
