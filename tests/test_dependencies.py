"""What src/ imports is what pyproject.toml declares, and no peer library is among it."""

import ast
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Import name → distribution name, where they differ.
DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "huggingface_hub": "huggingface-hub",
    "umap": "umap-learn",
    "deel": "deel-torchlip",
}
PEERS = {"captum", "xplique", "horama", "overcomplete", "lime", "shap", "zennit"}


def imported_top_level_modules() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def declared_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def test_no_peer_library_is_imported_at_run_time() -> None:
    imported = imported_top_level_modules()
    assert not {name: imported[name] for name in PEERS & set(imported)}


def test_every_third_party_import_is_declared() -> None:
    declared = declared_dependencies()
    missing = {}
    for name, files in imported_top_level_modules().items():
        if name == "spyglass" or name in sys.stdlib_module_names or name == "__future__":
            continue
        distribution = DISTRIBUTIONS.get(name, name).lower().replace("_", "-")
        if distribution not in declared:
            missing[name] = files
    assert not missing, f"imported by src/ but not in [project.dependencies]: {missing}"
