"""The grid cells ↔ pixels rule every grid-based method shares (spyglass.engines.grid)."""

import pytest
import torch
import torch.nn.functional as F

from spyglass.attributions import HsicAttribution
from spyglass.attributions._surrogate import segment
from spyglass.engines import UpsampledMasks, cell_boxes, cell_of_pixel, cell_sums, cells_along, upsample_cells
from spyglass.metrics import MuFidelity

# (height, width, grid_size): dividing, not dividing, non-square, grid 1, grid = image size.
SIZES = [(32, 32, 4), (30, 30, 7), (31, 17, 5), (7, 7, 3), (9, 6, 1), (5, 5, 5), (6, 4, 4), (224, 224, 7)]


def slow_cell_of_pixel(height: int, width: int, grid_size: int) -> torch.Tensor:
    """The textbook rule, one pixel at a time in Python integers."""
    cells = torch.empty(height, width, dtype=torch.long)
    for r in range(height):
        for c in range(width):
            cells[r, c] = (r * grid_size // height) * grid_size + c * grid_size // width
    return cells


def torch_nearest(height: int, width: int, grid_size: int) -> torch.Tensor:
    """What UpsampledMasks and MuFidelity computed before the grid module (floating point)."""
    grid = torch.arange(grid_size**2, dtype=torch.float32).view(1, 1, grid_size, grid_size)
    return F.interpolate(grid, size=(height, width), mode="nearest").long()[0, 0]


def test_hand_computed_cells() -> None:
    assert cells_along(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert cell_of_pixel(3, 5, 2).tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [2, 2, 2, 3, 3]]
    assert cell_of_pixel(4, 6, 1).unique().tolist() == [0]  # grid_size 1: one cell
    assert torch.equal(cell_of_pixel(5, 5, 5), torch.arange(25).view(5, 5))  # one pixel per cell
    assert cell_of_pixel(2, 3, 2, device="cpu").dtype == torch.long


@pytest.mark.parametrize(("height", "width", "grid_size"), SIZES)
def test_the_rule_is_todays_lime_grid_and_upsampling(height: int, width: int, grid_size: int) -> None:
    cells = cell_of_pixel(height, width, grid_size)
    assert torch.equal(cells, slow_cell_of_pixel(height, width, grid_size))  # LIME's formula
    # At these sizes torch's floating-point nearest agrees, so Sobol, HSIC and MuFidelity see
    # exactly the cells they saw before.
    assert torch.equal(cells, torch_nearest(height, width, grid_size))
    assert sorted(cells.unique().tolist()) == list(range(grid_size**2))  # every cell has pixels


@pytest.mark.parametrize(("height", "grid_size"), [(224, 62), (82, 2)])
def test_exact_where_floating_point_nearest_misplaced_pixels(height: int, grid_size: int) -> None:
    cells = cell_of_pixel(height, height, grid_size)
    assert torch.equal(cells, slow_cell_of_pixel(height, height, grid_size))
    assert not torch.equal(cells, torch_nearest(height, height, grid_size))


@pytest.mark.parametrize(("height", "width", "grid_size"), [*SIZES, (224, 224, 62)])
def test_every_consumer_uses_the_same_cells(height: int, width: int, grid_size: int) -> None:
    cells = cell_of_pixel(height, width, grid_size)
    grid = torch.arange(grid_size**2, dtype=torch.float32).view(1, grid_size, grid_size)
    assert torch.equal(UpsampledMasks(grid, (height, width))[0:1][0, 0].long(), cells)
    assert torch.equal(upsample_cells(grid, (height, width))[0].long(), cells)
    assert torch.equal(segment(torch.rand(3, height, width), "grid", grid_size=grid_size), cells)
    if grid_size > 1:
        tiny = torch.nn.Sequential(
            torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 2)
        )
        fidelity = MuFidelity(
            tiny, torch.rand(1, 3, height, width), torch.tensor([0]), grid_size=grid_size, nb_samples=2,
            subset_percent=0.5, progress=False,
        )  # fmt: skip
        assert torch.equal(fidelity.cell_of_pixel, cells.flatten())


@pytest.mark.parametrize(("height", "width", "grid_size"), SIZES)
def test_boxes_tile_the_image_cell_by_cell(height: int, width: int, grid_size: int) -> None:
    cells = cell_of_pixel(height, width, grid_size)
    boxes = cell_boxes(height, width, grid_size)
    assert boxes.shape == (grid_size**2, 4) and boxes.dtype == torch.long
    covered = torch.zeros(height, width, dtype=torch.long)
    for index, (top, left, bottom, right) in enumerate(boxes.tolist()):
        assert bottom > top and right > left
        assert (cells[top:bottom, left:right] == index).all()
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all()


def test_hand_computed_boxes_sums_and_upsampling() -> None:
    assert cell_boxes(3, 5, 2).tolist() == [[0, 0, 2, 3], [0, 3, 2, 5], [2, 0, 3, 3], [2, 3, 3, 5]]
    maps = torch.arange(6.0).view(1, 2, 3)
    torch.testing.assert_close(cell_sums(maps, 2), torch.tensor([[1.0, 2.0, 7.0, 5.0]]))
    assert cell_sums(maps.double(), 1).dtype == torch.float64
    torch.testing.assert_close(
        upsample_cells(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), (3, 3)),
        torch.tensor([[1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [3.0, 3.0, 4.0]]),
    )
    # Leading dimensions are kept, values copied (no blending), any mask resolution.
    masks = torch.rand(2, 1, 3, 4)
    up = upsample_cells(masks, (7, 9))
    assert up.shape == (2, 1, 7, 9)
    assert set(up.unique().tolist()) == set(masks.unique().tolist())


@pytest.mark.parametrize(("height", "width", "grid_size"), SIZES)
def test_cell_sums_match_a_loop(height: int, width: int, grid_size: int) -> None:
    maps = torch.rand(2, height, width, dtype=torch.float64)
    cells = slow_cell_of_pixel(height, width, grid_size)
    expected = torch.stack([torch.stack([m[cells == k].sum() for k in range(grid_size**2)]) for m in maps])
    torch.testing.assert_close(cell_sums(maps, grid_size), expected)


def test_bad_grids_are_reported() -> None:
    with pytest.raises(ValueError, match=r"grid_size must be at most the image size.*grid_size=6 for 5×8"):
        cell_of_pixel(5, 8, 6)
    with pytest.raises(ValueError, match="at most the image size"):
        cell_boxes(4, 4, 5)
    with pytest.raises(ValueError, match="grid_size must be a positive int"):
        cell_of_pixel(4, 4, 0)
    with pytest.raises(TypeError, match=r"grid_size must be a positive int; got 2.0 \(float\)"):
        cell_of_pixel(4, 4, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"maps must be a tensor \(N, H, W\)"):
        cell_sums(torch.rand(4, 4), 2)
    with pytest.raises(ValueError, match=r"masks must be a tensor \(\.\.\., h, w\)"):
        upsample_cells(torch.rand(4), (4, 4))


def test_hsic_maps_are_constant_on_the_cells_its_masks_hid() -> None:
    # 82 px with a 2 × 2 grid: a size where floating-point nearest resampling misplaced a row.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)
    )
    maps = HsicAttribution(model, grid_size=2, nb_design=16, progress=False)(torch.rand(1, 3, 82, 82), 1)
    cells = cell_of_pixel(82, 82, 2)
    for index in range(4):
        values = maps[0][cells == index]
        assert torch.equal(values, values[:1].expand_as(values))
