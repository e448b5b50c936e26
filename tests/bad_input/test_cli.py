"""The bad-input contract of the ``spyglass`` command line, driven by the app's own commands.

Every command (enumerated from the app, groups included) and each of its parameters (read from
the command itself) gets malformed values: a path that does not exist or is not an image, a
class out of range, an option value of the wrong type, an unknown option, a ``--out`` below a
regular file. Each must end with exit code 2 and exactly one line ``error: …``, no traceback;
a ``--out`` that cannot be a folder fails before any model is loaded. A new command or
parameter is covered without a line here.

The model is the tiny CNN (``--model tiny``, patched into :func:`spyglass.models.load`), so that
the contract stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

from spyglass import models
from spyglass.cli import app
from tests.bad_input.contract import count
from tests.bad_input.test_data import write_bomb
from tests.tiny import tiny_model

runner = CliRunner()
ROOT = get_command(app)


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in group.commands.items():
        if isinstance(getattr(command, "commands", None), dict):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = dict(_commands(ROOT))


def _params(path: tuple[str, ...]) -> dict[str, Any]:
    return {param.name: param for param in COMMANDS[path].params}


def test_the_commands_are_enumerated() -> None:
    # Every command is covered below; make sure the enumeration found them (and their parameters).
    assert {("predict",), ("explain",), ("evaluate",), ("concepts",), ("visualize",), ("demo",)} <= set(
        COMMANDS
    )
    assert "paths" in _params(("explain",)) and "out" in _params(("explain",))


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--model tiny`` is the tiny CNN; every model load is recorded."""
    real = models.load
    calls: list[str] = []

    def load(name: str = models.DEFAULT_MODEL, *args: Any, **kwargs: Any) -> models.VisionModel:
        calls.append(name)
        return tiny_model() if name == "tiny" else real(name, *args, **kwargs)

    monkeypatch.setattr("spyglass.models.load", load)
    monkeypatch.setattr("spyglass.demo.run.load", load)
    return calls


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 36), (200, 120, 30)).save(path)
    return path


def _positional(params: dict[str, Any], name: str) -> bool:
    return name in params and not any(opt.startswith("-") for opt in params[name].opts if opt != name)


def _empty_atlas(root: Path) -> Path:
    """A real atlas with no class built yet (what ``lens build`` creates first)."""
    from spyglass.lens.store import Atlas, ModelInfo

    if not root.exists():
        Atlas.create(
            root, ModelInfo("tiny", None, "features", ("a", "b"), ("a", "b")), {}, data=str(root)
        ).close()
    return root


def _base(path: tuple[str, ...], photo: Path, out: Path) -> list[str]:
    """A valid call of the command, from its parameters: what each bad case changes one thing of."""
    params = _params(path)
    args = list(path)
    if "paths" in params:
        args.append(str(photo))
    if _positional(params, "atlas"):  # the atlas commands: an empty atlas, then DIR where one is taken
        args.append(str(_empty_atlas(out.parent / "atlas")))
        if _positional(params, "out"):
            args.append(str(out))
    if "model" in params:
        args += ["--model", "tiny"]
    for folder in ("data", "maps"):  # the training and alignment commands' class folders
        if folder in params:
            args += [f"--{folder}", str(photo.parent)]
    if "out" in params and not _positional(params, "out"):
        args += ["--out", str(out)]
    if "target" in params:
        args += ["--target", "1"]
    if "progress" in params:
        args.append("--no-progress")
    return args


def _bad_cases(path: tuple[str, ...], photo: Path, tmp: Path) -> list[tuple[str, list[str]]]:
    """``(what, args)``: one malformed value of each parameter the command has."""
    params = _params(path)
    base = _base(path, photo, tmp / "out")
    cases: list[tuple[str, list[str]]] = [("unknown option", [*base, "--no-such-option"])]

    def change(flag: str, value: str) -> list[str]:
        args = list(base)
        if flag in args:
            args[args.index(flag) + 1] = value
            return args
        return [*args, flag, value]

    a_file = tmp / "a_file"
    a_file.write_text("results cannot go below me")
    not_an_image = tmp / "notes.jpg"
    not_an_image.write_text("not a jpeg")
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    bombs = tmp / "bombs"
    bombs.mkdir(exist_ok=True)
    write_bomb(bombs / "bomb.png")
    for name, param in params.items():
        flag = next((opt for opt in param.opts if opt.startswith("--")), None)
        if name == "paths":
            for what, value in [
                ("missing path", tmp / "absent.jpg"),
                ("not an image", not_an_image),
                ("empty folder", empty),
                ("only a decompression bomb", bombs),
            ]:
                args = list(base)
                args[args.index(str(photo))] = str(value)
                cases.append((what, args))
            continue
        if name in ("atlas", "out") and _positional(params, name):
            where = base.index(str(tmp / "atlas")) if name == "atlas" else base.index(str(tmp / "out"))
            label = "ATLAS" if name == "atlas" else "DIR"
            for what, value in [
                (f"{label} missing" if name == "atlas" else f"{label} below a file", a_file / "x"),
                (f"{label} is a file", a_file),
            ] + ([(f"{label} not an atlas", empty)] if name == "atlas" else []):
                args = list(base)
                args[where] = str(value)
                cases.append((what, args))
            continue
        if flag is None or getattr(param, "is_flag", False) or getattr(param, "hidden", False):
            continue
        annotation = param.type_descriptor.annotation
        if name == "out":
            cases.append(("--out below a file", change(flag, str(a_file / "out"))))
            cases.append(("--out is a file", change(flag, str(a_file))))
        elif name in ("target", "channel"):
            for value in ("-1", "5", str(2**70), "abc", "1.5"):
                cases.append((f"{flag} {value}", change(flag, value)))
        elif annotation is int:
            for value in ("abc", "1.5", "-5"):
                cases.append((f"{flag} {value}", change(flag, value)))
        elif name in ("option", "metric_option"):
            for value in ("novalue", "=3", "no_such_option=1", "nobody.steps=1", "batch_size=2"):
                cases.append((f"{flag} {value}", change(flag, value)))
        else:  # a text option: nonsense must be refused
            cases.append((f"{flag} nonsense", change(flag, "no-such-thing")))
    return cases


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_malformed_call_is_one_error_line_and_exit_2(
    path: tuple[str, ...], photo: Path, tmp_path: Path, loads: list[str]
) -> None:
    cases = _bad_cases(path, photo, tmp_path)
    assert len(cases) >= 1 + (len(_params(path)) > 1)  # the enumeration of parameters found some
    for what, args in cases:
        loads.clear()
        result = runner.invoke(app, args)
        entry = f"cli {' '.join(path)}"
        lines = result.output.strip().splitlines()
        errors = [line for line in lines if line.startswith("error: ")]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            count(entry, "crashed")
            raise AssertionError(f"{entry} ({what}): {type(result.exception).__name__}: {result.exception}")
        if result.exit_code == 0:
            count(entry, "silently accepted")
            raise AssertionError(f"{entry} ({what}) exited 0: {result.output}")
        if result.exit_code != 2 or len(errors) != 1 or "Traceback" in result.output:
            count(entry, "unclear")
            raise AssertionError(f"{entry} ({what}) exited {result.exit_code}: {result.output}")
        if what.startswith("--out"):  # where the results go is checked before any work
            assert not loads, f"{entry} ({what}) loaded {loads} before refusing --out"
            assert "--out" in errors[0]
        count(entry, "refused")


def test_a_decompression_bomb_is_a_one_line_warning(photo: Path, tmp_path: Path, loads: list[str]) -> None:
    write_bomb(photo.parent / "bomb.png")
    result = runner.invoke(app, ["predict", str(photo.parent), "--model", "tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "bomb.png (DecompressionBombError" in warnings[0]
    # Python's default would add the file and source line of the warn call: it reads like a traceback.
    assert "read_images(" not in result.output and ".py:" not in result.output


def test_an_unqualified_option_goes_to_the_methods_that_take_it(
    photo: Path, tmp_path: Path, loads: list[str]
) -> None:
    # The README's `--option steps=32` with the default methods: only integrated_gradients takes it.
    out = tmp_path / "out"
    args = [
        "explain",
        str(photo),
        "--model",
        "tiny",
        "--out",
        str(out),
        "--no-progress",
        "--option",
        "steps=4",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "photo.integrated_gradients.npy").is_file() and (out / "photo.saliency.npy").is_file()
    refused = runner.invoke(app, [*args[:-1], "no_such_option=4"])
    assert refused.exit_code == 2
    assert refused.output.startswith("error: --option 'no_such_option=4': no chosen method")


@given(limit=st.sampled_from(["0", "-1", "x", str(2**70)]), batch=st.sampled_from(["0", "-3", "2.5", "nan"]))
def test_numeric_options_fuzzed(limit: str, batch: str, loads: list[str]) -> None:
    for option, value in (("--limit", limit), ("--batch-size", batch)):
        args = ["predict", "absent.png", "--model", "tiny", option, value]
        result = runner.invoke(app, args)
        entry = "cli predict"
        ok = (
            result.exit_code == 2
            and result.output.startswith("error: ")
            and len(result.output.splitlines()) == 1
        )
        count(entry, "refused" if ok else "unclear")
        assert ok, (args, result.output)


def test_infinite_target_text_is_refused() -> None:
    result = runner.invoke(app, ["visualize", "--target", str(math.inf)])
    assert result.exit_code == 2 and result.output.startswith("error: ")
