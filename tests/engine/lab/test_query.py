"""engine.lab.query.embed_image: an uploaded image embedded exactly as a store item of the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.augment import preprocess
from engine.core.errors import ConfigError
from engine.data import load_dataset
from engine.lab.query import embed_image
from engine.methods import build_method


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_method("equimod", width=0.125, image_size=32).eval()


def test_embed_image_equals_the_batch_embedding_of_the_same_image(model):
    images = np.array(load_dataset("shapes", "test", size=4).images)
    with torch.no_grad():
        batch = model.embed(preprocess(images, 32))
    for space in ("backbone", "equivariant"):
        z = embed_image(model, images[2], space)
        assert z.dtype == np.float32 and z.shape == (batch[space].shape[1],)
        np.testing.assert_allclose(z, batch[space][2].numpy(), atol=1e-5)


def test_embed_image_resizes_any_upload_and_refuses_an_unknown_space(model):
    wide = np.random.default_rng(0).integers(0, 256, (20, 50, 3), dtype=np.uint8)
    with torch.no_grad():
        want = model.embed(preprocess(wide, 32))["backbone"][0].numpy()
    np.testing.assert_allclose(embed_image(model, wide, "backbone"), want, atol=1e-6)
    with pytest.raises(ConfigError, match="space 'nope'"):
        embed_image(model, wide, "nope")
