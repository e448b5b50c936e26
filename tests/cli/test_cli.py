"""The `spyglass` command, driven as a user would."""

import re
from pathlib import Path

import torch
from PIL import Image
from typer.testing import CliRunner

from spyglass.cli import app
from spyglass.data import sample_photos
from spyglass.models import VisionModel

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("predict", "layers", "explain", "demo", "models"):
        assert command in result.output


def test_predict_prints_top_k(tmp_path: Path) -> None:
    sample_photos(["coffee"])["coffee"].save(tmp_path / "coffee.jpg")
    result = runner.invoke(app, ["predict", str(tmp_path / "coffee.jpg"), "-k", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].endswith("coffee.jpg")
    assert len(lines) == 4
    assert re.match(r"\s*\d+\.\d\d%\s+967\s+espresso", lines[1])


def test_predict_bad_path_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(tmp_path / "nope.jpg")])
    assert result.exit_code == 2
    assert "error: no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_unknown_model_is_one_line_error(tmp_path: Path) -> None:
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    result = runner.invoke(app, ["predict", str(tmp_path / "a.png"), "--model", "resnet05"])
    assert result.exit_code == 2 and "Did you mean resnet50" in result.output


def test_layers_lists_splittable_layers() -> None:
    result = runner.invoke(app, ["layers"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^blocks\.5\s+Sequential\s+192×7×7$", result.output, re.MULTILINE)
    assert "blocks.5.1.conv_pw" not in result.output  # not a valid cut: hidden without --all
    # The layer Grad-CAM and CRAFT read by default is marked, and only it.
    assert re.search(r"^bn2\s+BatchNormAct2d\s+1280×7×7  default$", result.output, re.MULTILINE)
    assert result.output.count("default") == 1


def test_demo_writes_the_report(tmp_path: Path) -> None:
    # One cheap method keeps the test fast; `make demo` runs the default set.
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--method", "saliency", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert re.search(r"wrote .*index\.html in \d+ s", result.output)
    page = (tmp_path / "index.html").read_text()
    assert page.count("<figure>") == 7
    coffee = page[page.index('alt="coffee"') :]
    coffee = coffee[: coffee.index("</figure>")]
    assert "espresso" in coffee.split("<tr>")[1]  # first row of the coffee card
    assert "✗" not in page  # every photo with an expected class got it
    # "Where the model looks": one saliency overlay per photo, for its top-1 class.
    section = page[page.index("Where the model looks") :]
    assert section.count('alt="saliency map of') == 7
    assert "coffee · espresso" in section
    overlays = sorted((tmp_path / "images").glob("saliency_*.png"))
    assert len(overlays) == 7 and Image.open(overlays[0]).size == (224, 224)
    # "What the model sees": CRAFT on each photo, its 3 most important concepts, each with
    # its concept attribution map and 4 crops.
    section = page[page.index("What the model sees") :]
    assert section.count('alt="concept ') == 7 * 3 and section.count('class="crop"') == 7 * 3 * 4
    assert len(list((tmp_path / "images").glob("concept_*.png"))) == 21
    assert "importance share" in section


def test_demo_without_concepts_leaves_the_section_out(tmp_path: Path) -> None:
    args = ["demo", "--out", str(tmp_path), "--method", "gradcam", "--no-concepts", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "What the model sees" not in (tmp_path / "index.html").read_text()


def test_demo_unknown_method_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--method", "sobolz"])
    assert result.exit_code == 2 and "Did you mean sobol" in result.output
    assert not (tmp_path / "index.html").exists()


def test_demo_default_methods_are_registered_and_known() -> None:
    from spyglass import attributions
    from spyglass.demo import _demo_methods

    chosen = _demo_methods(None)
    assert chosen and set(chosen) <= set(attributions.list_methods())
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    model = VisionModel(network, input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=["a", "b"])
    for name in chosen:  # the demo's settings are options the method takes
        attributions.create(name, model.eval(), **attributions.method_settings(name, "demo"))
