"""Helpers shared by the tests (fixtures live in conftest.py)."""

import torch


def module_flags(model: torch.nn.Module) -> list[bool]:
    """Every sub-module's train/eval flag, to check a model is left as found."""
    return [m.training for m in model.modules()]


def mixed_mode(model: torch.nn.Module) -> torch.nn.Module:
    """Train mode overall with one frozen sub-module: the state users leave models in."""
    model.train()
    next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).eval()
    return model
