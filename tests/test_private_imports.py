"""No sub-package of spyglass reaches into another's private names.

A sub-package is a direct child of ``spyglass`` (``spyglass.attributions``,
``spyglass.models``, the module ``spyglass.validation``...). Inside one, private modules
and names are shared freely; across two, only public names may be used, so that each
family can reorganise its insides without breaking the others. The check parses every
module with :mod:`ast` (nothing is imported) and flags:

- ``from spyglass.other.module import _name``;
- ``from spyglass.other._module import name`` and ``import spyglass.other._module``;
- ``module._name`` where ``module`` is bound in the file to a module of another
  sub-package (``from spyglass.other import module``, ``import spyglass.other.module as m``).

Private attributes of *objects* (``craft._concept_spaces`` on a ``Craft`` instance) are
out of reach of a static check; names with two leading and trailing underscores are
public (``__version__``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "spyglass"


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _unit(module: str) -> str:
    """``spyglass.models.split`` -> ``spyglass.models``; the root package is its own unit."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _first_private(module: str) -> str | None:
    """The first private component of ``module`` past ``spyglass.<unit>``, if any."""
    return next((part for part in module.split(".")[2:] if _private(part)), None)


def find_violations(
    source: str, module: str, *, is_package: bool = False, modules: frozenset[str] = frozenset()
) -> list[Violation]:
    """The cross-sub-package private uses in ``source``, the text of module ``module``.

    ``modules`` names the modules of the package, to tell ``from spyglass.x import y``
    binding a module ``y`` from binding a function.
    """
    tree = ast.parse(source)
    path = module.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    own = _unit(module)
    found: list[Violation] = []
    module_aliases: dict[str, str] = {}  # local name -> module of another sub-package

    def foreign(name: str) -> bool:
        return (name == PACKAGE or name.startswith(PACKAGE + ".")) and _unit(name) != own

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source_module = _resolve(module, is_package, node.level, node.module)
            if not foreign(source_module):
                continue
            private_part = _first_private(source_module)
            for alias in node.names:
                if private_part is not None:
                    found.append(
                        Violation(
                            path, node.lineno, f"imports {alias.name} from private module {source_module}"
                        )
                    )
                elif _private(alias.name):
                    found.append(Violation(path, node.lineno, f"imports {source_module}.{alias.name}"))
                elif f"{source_module}.{alias.name}" in modules:
                    module_aliases[alias.asname or alias.name] = f"{source_module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not foreign(alias.name):
                    continue
                if _first_private(alias.name) is not None:
                    found.append(Violation(path, node.lineno, f"imports private module {alias.name}"))
                elif alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            target = module_aliases.get(head)
            if target is None and head == PACKAGE:
                target = PACKAGE  # spyglass.attributions.gradcam._x written out in full
            if target is None:
                continue
            full = ".".join(filter(None, [target, rest]))
            if foreign(full) or (full == PACKAGE and foreign(f"{PACKAGE}.{node.attr}")):
                found.append(Violation(path, node.lineno, f"uses {full}.{node.attr}"))
    return sorted(found, key=lambda v: v.line)


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _package_modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for file in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = file.relative_to(SRC).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = (file, is_package)
    return found


def test_no_sub_package_uses_another_ones_private_names() -> None:
    package = _package_modules()
    assert len(package) > 20, f"found too few modules under {SRC}"  # the walk itself works
    names = frozenset(package)
    violations = [
        violation
        for name, (file, is_package) in package.items()
        for violation in find_violations(file.read_text(), name, is_package=is_package, modules=names)
    ]
    assert not violations, "private names used across sub-packages:\n" + "\n".join(map(str, violations))


MODULES = frozenset({"spyglass.models.split", "spyglass.models._helpers", "spyglass.attributions.gradcam"})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from spyglass.models.split import _input_shape, split\n",
            ["imports spyglass.models.split._input_shape"],
        ),
        ("from spyglass.models._helpers import thing\n", ["from private module spyglass.models._helpers"]),
        ("import spyglass.models._helpers\n", ["imports private module spyglass.models._helpers"]),
        ("from spyglass.models import split\nsplit._cut(1, 2)\n", ["uses spyglass.models.split._cut"]),
        ("import spyglass.models.split as s\nx = s._prefix\n", ["uses spyglass.models.split._prefix"]),
        ("import spyglass\nspyglass.models.split._cut\n", ["uses spyglass.models.split._cut"]),
        ("from ..models.split import _cut\n", ["imports spyglass.models.split._cut"]),
        ("from spyglass import _private_thing\n", ["imports spyglass._private_thing"]),
    ],
)
def test_the_check_catches_each_form(source: str, expected: list[str]) -> None:
    found = find_violations(source, "spyglass.concepts.craft", modules=MODULES)
    assert len(found) == len(expected), found
    for violation, text in zip(found, expected, strict=True):
        assert text in violation.what
        assert violation.path == "spyglass/concepts/craft.py"


@pytest.mark.parametrize(
    "source",
    [
        "from spyglass.concepts._importance import ConceptSpace\n",  # private module, same sub-package
        "from spyglass.concepts.craft import _feature_maps\n",
        "from ._crops import resize\n",
        "from spyglass.models.split import split\nsplit.__doc__\n",  # dunder is public
        "from spyglass.models import split\nsplit.split\n",
        "from spyglass.attributions.gradcam import GradCAM\nGradCAM._hidden\n",  # a class, not a module
        "import torch\ntorch._C\n",  # other packages are not checked
    ],
)
def test_the_check_accepts_allowed_uses(source: str) -> None:
    assert find_violations(source, "spyglass.concepts.craft", modules=MODULES) == []


def test_the_check_names_file_and_line() -> None:
    source = "import torch\n\nfrom spyglass.attributions.gradcam import _is_feature_map\n"
    (violation,) = find_violations(source, "spyglass.concepts.craft", modules=MODULES)
    assert str(violation) == (
        "spyglass/concepts/craft.py:3: imports spyglass.attributions.gradcam._is_feature_map"
    )
