"""The backbone variants: block shapes as their weights files have them, and an artefact that
names its backbone and is rebuilt with it."""

import importlib.util

import pytest
import torch

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.errors import UserError
from edge_inspector.model.backbone import VARIANTS, EfficientNetLiteFeatures
from edge_inspector.model.kmdgan.artefact import load_artefact, save_artefact
from edge_inspector.model.kmdgan.network import STRIDES, KMDGANArchitecture, KMDGANGenerator


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_loads_its_packages_weights_exactly(name):
    package = VARIANTS[name].package
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} not installed (the {name.split('-')[-1]} extra)")
    backbone = EfficientNetLiteFeatures((8, 16), name=name)  # every key present, every shape the file's
    features = backbone(torch.rand(1, 3, 128, 128))
    assert [f.shape[1] for f in features] == backbone.channels and [f.shape[-1] for f in features] == [16, 8]


def test_an_artefact_names_its_backbone_and_is_rebuilt_with_it(tmp_path):
    arch = KMDGANArchitecture.from_config(KMDGANModelConfig(kind="kmdgan", input_size=128))
    generator = KMDGANGenerator(arch, EfficientNetLiteFeatures(STRIDES, weights=False, name="efficientnet-lite2"))
    banks = [torch.randn(64, generator.backbone.channels[STRIDES.index(s)]) for s in generator.matched]
    path = save_artefact(tmp_path / "lite2.safetensors", generator, banks, 1.0, 128, {"test": True})
    model = load_artefact(path)
    assert model.meta["backbone"] == "efficientnet-lite2" and model.model.backbone.name == "efficientnet-lite2"
    assert [b.shape[1] for b in model.banks] == [{8: 48, 16: 120}[s] for s in generator.matched]
    images = torch.rand(2, 3, 128, 128)
    assert torch.allclose(model(images)[0], generator.eval()(images, *banks)[0], atol=1e-5)


def test_an_unknown_backbone_is_one_line():
    with pytest.raises(UserError, match="backbone 'efficientnet-lite9' unknown"):
        EfficientNetLiteFeatures((8, 16), weights=False, name="efficientnet-lite9")
