"""``bench gpu``: the one-command GPU check; here (no CUDA) its tiny CPU version and what it says it skipped."""

from __future__ import annotations

import json

import pytest
import torch

import engine.benches.gpu as gpu
from engine.benches.gpu import (
    CPU_SKIPS,
    ON_CPU,
    ON_GPU,
    epoch_row,
    epoch_steps,
    method_names,
    settings_for,
)
from engine.cli import main
from engine.core.errors import ConfigError


def test_epoch_steps_drop_the_partial_batch() -> None:
    assert epoch_steps(50_000, 512) == 97  # 97 * 512 = 49,664; the last 336 images are dropped
    assert epoch_steps(1024, 512) == 2


def test_epoch_row_uses_simclrs_fastest_median_step() -> None:
    rows = [
        {"item": "train step simclr", "setting": "w1 b512 eager", "median": 200.0},
        {"item": "train step simclr", "setting": "w1 b512 compiled (first call 40 s)", "median": 100.0},
        {"item": "train step essl", "setting": "w1 b512 eager", "median": 10.0},
    ]
    row = epoch_row(rows, ON_GPU)
    assert row["median"] == pytest.approx(97 * 0.1) and row["unit"] == "s/epoch"
    assert "compiled" in row["setting"] and row["img_per_s"] == pytest.approx(50_000 / 9.7)


def test_settings_and_methods() -> None:
    assert settings_for(torch.device("cpu"), None, False) == ON_CPU
    assert settings_for(torch.device("cuda"), 3, True).rounds == 3
    assert not settings_for(torch.device("cuda"), None, True).compile
    assert ON_GPU.width == 1.0 and ON_GPU.batch == 512 and ON_GPU.compile
    with pytest.raises(ConfigError, match="at least 1 round"):
        settings_for(torch.device("cpu"), 0, False)
    assert method_names(None)[0] == "simclr" and "none" not in method_names(None)
    assert {"essl", "equimod", "clever"} <= set(method_names(None))
    assert method_names("essl") == ["simclr", "essl"]
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        method_names("nope")


def test_budget_used_up_lists_every_item_as_skipped(capsys) -> None:
    assert main(["bench", "gpu", "--device", "cpu", "--methods", "essl", "--budget-s", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for item in ("train step simclr", "train step essl", "augmentation throughput", "embedding throughput"):
        assert any(line.startswith(f"skipped: {item}: the time budget of 0 s") for line in lines), item


@pytest.mark.slow
def test_cpu_fallback_prints_one_table_and_what_it_skipped(tmp_path, capsys) -> None:
    out = tmp_path / "gpu.json"
    argv = ["bench", "gpu", "--device", "cpu", "--methods", "simclr", "--rounds", "1", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("GPU check on cpu") == 1 and "tiny CPU version" in text
    for line in CPU_SKIPS:
        assert line in text
    res = json.loads(out.read_text())
    items = [r["item"] for r in res["rows"]]
    assert items[-2] == "train step simclr" and items[-1].startswith("CIFAR-10 epoch")
    assert (
        sum(i.startswith("augment ") for i in items) == 2 and sum(i.startswith("embed ") for i in items) == 2
    )
    assert all(r["median"] > 0 and r["img_per_s"] > 0 for r in res["rows"])
    assert res["skipped"] == list(CPU_SKIPS)


def test_a_compiler_failure_keeps_the_eager_row_and_its_whole_traceback(monkeypatch) -> None:
    """Inductor's errors name their cause pages below the first line (the device's 2026-12-04 check cut it at 200
    characters); the table keeps one line, the JSON the whole traceback. The failure is raised by hand: compiling
    for real takes minutes on these cores and succeeds here."""
    cause = "ptxas fatal: the real cause, far below the first line"

    def fails(*args, **kwargs):
        raise RuntimeError(
            "SubprocException: Name=triton_per_fused_nll_loss_forward_46\n" + "." * 400 + cause
        )

    monkeypatch.setattr(gpu, "_compiled_step", fails)
    s = gpu.replace(ON_CPU, compile=True, rounds=1)
    images = torch.randint(0, 256, (s.batch, 3, s.size, s.size), dtype=torch.uint8)
    skipped: list[str] = []
    errors: dict[str, str] = {}
    rows = gpu.method_rows("simclr", s, images, torch.device("cpu"), skipped, errors)
    assert [r["setting"].split()[-1] for r in rows] == ["eager"] and rows[0]["median"] > 0
    assert len(skipped) == 1 and skipped[0].startswith(
        "skipped: torch.compile of simclr: failed (RuntimeError"
    )
    assert cause not in skipped[0] and skipped[0].endswith('the whole error: "errors"')
    assert list(errors) == ["torch.compile of simclr"] and cause in errors["torch.compile of simclr"]
    assert "Traceback" in errors["torch.compile of simclr"]
