"""Evaluation protocols of issue 13: the recipe an arm is measured with, CLeVER's parts where the losses act
(toy model with a known answer), and the papers' augmented SGD linear probe on a tiny store."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engine.augment import FAMILIES, equimod_vector, get_recipe
from engine.eval.context import EvalContext, sample_images
from engine.eval.displacement import displace, eval_recipe, fit_space_predictors, recipe_name, store_reference
from engine.eval.evaluate import clever_rows, evaluate
from engine.eval.measures import PREDICTORS
from engine.eval.metrics import probe_accuracy, sgd_probe_for, train_sgd_probes
from engine.methods import build_method
from engine.store.build import EmbedJob, build_store
from engine.store.format import StoreOptions, open_store
from engine.train.checkpoint import save_checkpoint


def test_an_arm_without_a_recipe_field_gets_its_datasets_recipe():
    for name in ("none", "rotation"):
        model = build_method(name, width=0.0625, image_size=32)
        assert (
            eval_recipe(model, "shapes") == get_recipe("shapes", 32)
            and recipe_name(model, "shapes") == "shapes"
        )
        assert eval_recipe(model, "cifar10") == get_recipe("simclr", 32)
    trained = build_method("simclr", width=0.0625, image_size=32, options={"recipe": "simclr"})
    assert eval_recipe(trained, "shapes") == get_recipe("simclr", 32)  # its own recipe wins


class ToyCLeVER(nn.Module):
    """Raw slices: per-channel means (non-negative, so any two images look alike); g_EF: a one-hot at a hash of
    the view's pixels, so two different views of one image give orthogonal head outputs (cos 0)."""

    image_size = 16

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raw = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1) + 0.5
        key = (x.flatten(1) * 1e4).sum(1).long() % 997
        return {
            "invariant_part": raw[:, :3],
            "equivariant_part": raw[:, 3:],
            "ir_head": raw[:, :3] - 0.5,
            "ef_head": nn.functional.one_hot(key, 997).float(),
        }


def test_clever_head_level_ef_cosine_is_zero_where_the_raw_slice_is_not():
    imgs = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 3, 16, 16), dtype=np.uint8))
    rows = clever_rows(ToyCLeVER(), imgs, get_recipe("simclr", 16), seed=0)
    v = {(r["space"], r["metric"]): r["value"] for r in rows}
    assert abs(v["ef_head", "cross_view_cos"]) < 0.05 and abs(v["ef_head", "between_image_cos"]) < 0.05
    assert v["equivariant_part", "cross_view_cos"] > 0.5
    assert v["equivariant_part", "between_image_cos"] > 0.5  # the raw slice's high floor between images
    notes = {r["space"]: r["note"] for r in rows}
    assert "raw backbone slice" in notes["equivariant_part"] and "g_EF" in notes["ef_head"]


def test_sgd_probe_beats_chance_in_two_epochs_on_planted_features():
    """Fresh noisy 'views' of class-separable features every epoch: 2 epochs of the E-SSL probe beat chance."""

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 32)) * 2
    y = np.arange(1024) % 10
    test_x = np.abs(centres[y[:512]] + rng.normal(size=(512, 32)))

    def batches(epoch):
        r = np.random.default_rng(epoch)
        for s in range(0, 1024, 256):
            x = np.abs(centres[y[s : s + 256]] + r.normal(size=(256, 32)))  # non-negative, like pooled ReLUs
            yield {"backbone": torch.as_tensor(x, dtype=torch.float32)}, torch.as_tensor(y[s : s + 256])

    batches.n_batches = 4
    for method in ("essl", "equimod", "none"):
        heads = train_sgd_probes(batches, {"backbone": 32}, 10, sgd_probe_for(method), epochs=2)
        assert probe_accuracy(heads["backbone"], test_x, y[:512]) > 0.3, method


def test_sgd_probe_runs_on_a_tiny_store_and_records_its_protocol(tmp_path):
    """End to end (an untrained network's features carry little class information: only the wiring is tested)."""

    torch.manual_seed(0)
    model = build_method("equimod", width=0.0625, image_size=32)
    ckpt = save_checkpoint(tmp_path / "ck", model, config={}, epoch=0, step=0).with_suffix(".safetensors")
    opts = StoreOptions(umap=False)
    stores = {
        split: open_store(
            build_store(EmbedJob(ckpt, "shapes", split, store_root=tmp_path, device="cpu", limit=n), opts)
        )
        for split, n in (("train", 96), ("test", 64))
    }
    ctx = EvalContext(test=stores["test"], train=stores["train"], probe="sgd", probe_epochs=1, probe_cap=0)
    rows = evaluate(ctx, ("linear",))
    proto = next(r for r in rows if r["space"] == "protocol")["note"]
    assert (
        proto.startswith("sgd lr 0.2") and "nesterov" in proto and "1 epochs" in proto and "96 train" in proto
    )
    acc = {r["space"]: r["value"] for r in rows if r["metric"] == "linear_acc"}
    assert set(acc) == {"backbone", "projector", "equivariant"} and all(0 <= a <= 1 for a in acc.values())


def test_lab_api_fits_the_baselines_of_a_space(tmp_path):
    """fit_space_predictors + store_reference: what the lab calls for one model, store and space."""

    torch.manual_seed(0)
    model = build_method("equimod", width=0.0625, image_size=32).eval()
    ckpt = save_checkpoint(tmp_path / "ck", model, config={}, epoch=0, step=0).with_suffix(".safetensors")
    job = EmbedJob(ckpt, "shapes", "train", store_root=tmp_path, device="cpu", limit=64)
    store = open_store(build_store(job, StoreOptions(umap=False)))
    preds = fit_space_predictors(model, store, "equivariant", n_fit=64, n_sweep=4)
    assert preds.method_kind == "model" and ("hue", 0.25) in preds.group_means
    imgs, _ = sample_images(store, 4, 0)
    params = FAMILIES["hue"].params(0.25, 4, (32, 32), 32)
    d = displace(model, imgs, params, "equivariant", ref=store_reference(store, "equivariant"))
    out = preds.predict(d.z0, equimod_vector(params, (32, 32)).numpy(), [("hue", 0.25)] * 4)
    assert set(out) == set(PREDICTORS) and all(v.shape == d.z0.shape for v in out.values())
    assert np.isfinite(d.rel_invariance).all()
