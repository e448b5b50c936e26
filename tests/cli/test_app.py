"""The root command as a whole: every command's help, one vocabulary, one error path, groups."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
import torch
import typer
from typer.main import get_command
from typer.testing import CliRunner

from spyglass.cli import _prelude, app, build_app, mount
from spyglass.data import sample_photos
from spyglass.models import VisionModel

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _is_group(command: object) -> bool:
    # Typer builds its groups on its own copy of click's classes: ask for the commands.
    return isinstance(getattr(command, "commands", None), dict)


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under ``group`` (``("predict",)``, ``("lens", "build")``, …)."""
    paths: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if _is_group(command):
            paths.extend(_commands(command, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = _commands(get_command(app))


def test_the_app_has_its_commands_and_the_train_group() -> None:
    assert {path for path in COMMANDS if path[0] == "train"} == {
        ("train", "harmonize"),
        ("train", "lipschitz"),
    }
    assert sorted({path[0] for path in COMMANDS}) == sorted(
        [
            "predict",
            "layers",
            "models",
            "explain",
            "evaluate",
            "concepts",
            "visualize",
            "demo",
            "train",
            "alignment",
            "lens",
        ]
    )
    assert {path for path in COMMANDS if path[0] == "lens"} >= {("lens", "build"), ("lens", "info")}


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: spyglass {' '.join(path)}" in result.output
    example = result.output[result.output.index("Example:") :]
    # The example runs the command itself, kept on its own lines.
    assert f"\n      spyglass {' '.join(path)}" in example


# The old spellings, accepted for one release, and hidden from --help.
OLD_SPELLINGS = {
    "concepts": ["--class", "-c", "--images", "-i"],
    "visualize": ["--class", "-c"],
    "evaluate": ["--data", "-d"],
}


@pytest.mark.parametrize("command", sorted(OLD_SPELLINGS))
def test_old_spellings_are_hidden_from_help(command: str) -> None:
    shown = runner.invoke(app, [command, "--help"]).output
    for flag in OLD_SPELLINGS[command]:
        assert f"{flag} " not in shown and f"{flag}," not in shown
    assert "-t, --target" in shown


def test_the_target_and_image_options_are_one_spelling_everywhere() -> None:
    for command in ("explain", "evaluate", "concepts", "visualize"):
        assert "-t, --target <int>" in runner.invoke(app, [command, "--help"]).output
    for command in ("predict", "explain", "evaluate", "concepts"):
        shown = runner.invoke(app, [command, "--help"]).output
        assert f"Usage: spyglass {command} [OPTIONS] [IMAGE_OR_DIR]..." in shown
    for command in ("predict", "layers", "explain", "evaluate", "concepts", "visualize", "demo"):
        assert "-m, --model <str>" in runner.invoke(app, [command, "--help"]).output


# One user mistake per command, and the first words of the one-line error it must give.
# A new command adds its case here (the test below checks that every command has one).
USER_ERROR_CASES = {
    "predict": (["predict", "nope.jpg"], "error: no such file or directory: nope.jpg"),
    "layers": (["layers", "--model", "resnet05"], "error: "),
    "explain": (["explain", "photo.jpg", "-M", "salency"], "error: unknown attribution method 'salency'"),
    "evaluate": (["evaluate", "photo.jpg", "--metric", "delition"], "error: unknown metric 'delition'"),
    "concepts": (["concepts", "photo.jpg", "--map", "heat"], "error: --map must be 'gradcam' or"),
    "visualize": (["visualize", "-t", "1", "--method", "lucid"], "error: --method must be maco or fourier"),
    "demo": (["demo", "--method", "sobolz"], "error: unknown attribution method 'sobolz'"),
    "alignment": (["alignment", "--maps", "nope.jpg"], "error: no such folder: nope.jpg"),
    "lens": (["lens", "build", "--data", "nope.jpg"], "error: no such folder: nope.jpg"),
    "train": (
        ["train", "harmonize", "--data", "nope.jpg", "--model", "resnet18"],
        "error: no such folder: nope.jpg",
    ),
}
NO_USER_INPUT = {"models"}  # nothing a user gives can be wrong


def test_every_command_has_a_user_error_case() -> None:
    assert set(USER_ERROR_CASES) | NO_USER_INPUT == {path[0] for path in COMMANDS}


@pytest.mark.parametrize("command", sorted(USER_ERROR_CASES))
def test_a_user_error_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    args, message = USER_ERROR_CASES[command]
    sample_photos(["coffee"])["coffee"].save(tmp_path / "photo.jpg")
    args = [str(tmp_path / a) if a in ("photo.jpg", "nope.jpg") else a for a in args]
    if command not in ("predict", "layers"):
        args += ["--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.startswith(message.replace("nope.jpg", str(tmp_path / "nope.jpg")))
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["predict", "explain", "evaluate", "concepts"])
def test_no_images_is_a_one_line_error(command: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [command, "--out", str(tmp_path)] if command != "predict" else [command])
    assert result.exit_code == 2
    assert result.output.startswith("error: no images given: name image files or folders")


def test_target_and_its_old_spelling_must_agree() -> None:
    result = runner.invoke(app, ["visualize", "--target", "1", "--class", "2", "--steps", "1"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --target 1 and --class 2 disagree")


def test_visualize_old_class_spelling_is_the_target(tmp_path: Path) -> None:
    cheap = ["--steps", "1", "--image-size", "32", "--nb-crops", "1", "--no-progress"]
    saved = []
    for flag in ("-c", "--target"):
        out = tmp_path / flag.strip("-")
        result = runner.invoke(app, ["visualize", flag, "1", "--out", str(out), *cheap])
        assert result.exit_code == 0, result.output
        assert "logit(1) (goldfish)" in result.output
        saved.append(np.load(out / "visualization.npz")["image"])
    np.testing.assert_array_equal(saved[0], saved[1])  # same seed, same objective


def test_layers_old_positional_model_spelling() -> None:
    new = runner.invoke(app, ["layers", "--model", "efficientnet_lite0"])
    old = runner.invoke(app, ["layers", "efficientnet_lite0"])
    assert new.exit_code == old.exit_code == 0, old.output
    assert old.output == new.output and "blocks.5" in old.output
    clash = runner.invoke(app, ["layers", "resnet50", "--model", "efficientnet_lite1"])
    assert clash.exit_code == 2 and clash.output.startswith("error: --model efficientnet_lite1 and resnet50")


def _toy_group() -> typer.Typer:
    group = typer.Typer(help="A toy group of commands.")

    @group.command()
    def greet(name: str = "world") -> None:
        """Say hello.

        Example:

            spyglass toy greet --name you
        """
        typer.echo(f"hello {name}")

    @group.command()
    def fail() -> None:
        """Fail as a user error does."""
        with _prelude.user_errors():
            raise ValueError("toy went wrong")

    return group


def test_a_mounted_group_runs_its_commands() -> None:
    root = build_app([("toy", _toy_group())])
    assert "toy" in runner.invoke(root, ["--help"]).output
    assert "A toy group of commands." in runner.invoke(root, ["--help"]).output
    result = runner.invoke(root, ["toy", "greet", "--name", "lens"])
    assert result.exit_code == 0 and result.output == "hello lens\n"
    result = runner.invoke(root, ["toy", "fail"])
    assert result.exit_code == 2 and result.output == "error: toy went wrong\n"
    assert {("toy", "greet"), ("toy", "fail")} <= set(_commands(get_command(root)))
    assert runner.invoke(root, ["predict", "--help"]).exit_code == 0  # the families are still there
    assert "toy" not in runner.invoke(app, ["--help"]).output  # a fresh root each time


def test_mount_refuses_empty_taken_or_bad_names() -> None:
    root = build_app()
    with pytest.raises(ValueError, match="has no command"):
        mount(root, typer.Typer(), "train")
    with pytest.raises(ValueError, match="already has a command or group named 'explain'"):
        mount(root, _toy_group(), "explain")
    with pytest.raises(ValueError, match="lowercase word"):
        mount(root, _toy_group(), "Train Now")
    with pytest.raises(TypeError, match=r"must be a typer\.Typer"):
        mount(root, object(), "train")  # type: ignore[arg-type]
    mount(root, _toy_group(), "toy")
    with pytest.raises(ValueError, match="already has a command or group named 'toy'"):
        mount(root, _toy_group(), "toy")


def test_the_real_app_has_no_empty_group() -> None:
    def walk(group: Any) -> None:
        for command in group.commands.values():
            if _is_group(command):
                assert command.commands, f"empty command group {command.name}"
                walk(command)

    walk(get_command(app))


def test_the_script_entry_resolves_to_main() -> None:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["spyglass"]
    module, _, name = entry.partition(":")
    main = getattr(import_module(module), name)
    from spyglass.cli.main import app as entry_app

    assert callable(main) and entry_app is app


def test_main_tunes_the_allocator_then_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("spyglass.cli.main.tune_allocator", lambda: calls.append("tuned") or True)
    monkeypatch.setattr(sys, "argv", ["spyglass", "models"])
    from spyglass.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0 and calls == ["tuned"]


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spyglass.cli", "models"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "efficientnet_lite0" in result.stdout.split()


def test_resolve_class_is_the_most_common_top1(lite0: VisionModel) -> None:
    photos = sample_photos(["coffee", "chelsea"])
    coffee, cat = (lite0.preprocess(photos[name]) for name in ("coffee", "chelsea"))
    images = torch.stack([coffee, coffee, cat])
    assert _prelude.resolve_class(lite0, images, None, progress=False) == (
        967,
        "the top-1 of 2 of 3 image(s)",
    )
    assert _prelude.resolve_class(lite0, images, 5, flag="--class") == (5, "--class")
    with pytest.raises(ValueError, match=r"--class must be a class index in \[0, 999\]; got 1000"):
        _prelude.resolve_class(lite0, images, 1000, flag="--class")
    targets, why = _prelude.resolve_targets(lite0, images, None, progress=False)
    assert targets.tolist()[:2] == [967, 967] and why[0].startswith("top-1, ")
    targets, why = _prelude.resolve_targets(lite0, images, 3)
    assert targets.tolist() == [3, 3, 3] and why == ["--target"] * 3


def test_scoped_options_parse_and_refuse() -> None:
    assert _prelude.scoped_options(["steps=8", "rise.p=0.5", "b.flag=true", "b.s=x"], ["rise", "b"]) == {
        "rise": {"steps": 8, "p": 0.5},
        "b": {"steps": 8, "flag": True, "s": "x"},
    }
    with pytest.raises(ValueError, match=r"--metric-option 'x\.k=1' names metric 'x'"):
        _prelude.scoped_options(["x.k=1"], ["deletion"], flag="--metric-option", kind="metric")
    with pytest.raises(ValueError, match="use --batch-size"):
        _prelude.scoped_options(["batch_size=2"], ["a"])
