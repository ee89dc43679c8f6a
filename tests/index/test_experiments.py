"""The index stage's model-output experiments (masked accuracy, the CLS token replaced by its
mean) against brute force: one image at a time, the model's blocks run by hand, pixel loops
for the masking; the same at another batch size and after a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.sources import open_source
from pipeline.data.synthetic import CLASS_NAMES, export_imagefolder
from pipeline.index import experiments
from pipeline.index.foreground import load_mask
from pipeline.index.stage import run_index
from pipeline.models import eval_transform
from pipeline.models.load import data_config
from pipeline.store import read_json
from tests.index.support import TINY_KW, tiny_run

N = 14
CLASSES = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exp")
    export_imagefolder(root / "img", N, "validation", 40, masks=root / "masks")
    return root


def _run(root: Path, out: str, **kw):
    return tiny_run(root / out, f"imagefolder:{root / 'img'}", masks=str(root / "masks"),
                    channels="0:4", model_kwargs={**TINY_KW, "num_classes": CLASSES}, **kw)


def _brute_replace(x: np.ndarray, mask: np.ndarray, region: str) -> np.ndarray:
    out = x.copy()
    mean = [float(np.mean(x[c], dtype=np.float64)) for c in range(x.shape[0])]
    for y in range(mask.shape[0]):
        for xx in range(mask.shape[1]):
            if bool(mask[y, xx]) == (region == "foreground"):
                out[:, y, xx] = mean
    return out


def _by_hand(model, x: torch.Tensor, replace: tuple[int, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits of one image through the blocks run by hand; each block's CLS state."""
    with torch.no_grad():
        h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x[None]))))
        states = []
        for b, blk in enumerate(model.blocks):
            h = blk(h)
            if replace is not None and replace[0] == b:
                h = h.clone()
                h[:, 0] = replace[1].float()
            states.append(h[0, 0].double())
        return model.forward_head(model.norm(h))[0].double(), states


def _brute(run, root: Path) -> dict:
    cfg = run.config.index
    source = open_source(cfg.dataset, cfg.split)
    transform = eval_transform(run.model, run.config.model.kwargs)
    mcfg = data_config(run.model, run.config.model.kwargs)
    model = run.model.eval()
    xs, right, labelled = [], np.zeros(3), 0
    for rec in source.records():
        dec = source.decoder(rec)
        x = transform(dec.image)
        xs.append(x)
        mask = load_mask(root / "masks" / Path(dec.id).with_suffix(".png"), mcfg)
        assert mask is not None
        labelled += 1
        for r, img in enumerate((x.numpy(), _brute_replace(x.numpy(), mask, "background"),
                                 _brute_replace(x.numpy(), mask, "foreground"))):
            logits, _ = _by_hand(model, torch.as_tensor(img))
            right[r] += int(int(logits.argmax()) == dec.label)
    plain = [_by_hand(model, x) for x in xs]
    mean = [torch.stack([p[1][b] for p in plain]).mean(0) for b in range(len(model.blocks))]
    kl, agree = [], []
    for b in range(len(model.blocks)):
        ks, same = [], 0
        for x, (logits, _) in zip(xs, plain, strict=True):
            changed, _ = _by_hand(model, x, (b, mean[b]))
            p, q = torch.softmax(logits, -1), torch.softmax(changed, -1)
            ks.append(float((p * (p.log() - q.log())).sum()))
            same += int(logits.argmax() == changed.argmax())
        kl.append(float(np.mean(ks)))
        agree.append(same / len(xs))
    return {"accuracy": right / labelled, "examples": labelled, "kl": kl, "agreement": agree}


def test_experiments_match_brute_force(folder):
    run = _run(folder, "a", index_batch_size=5)
    run_index(run)
    got = run.store.experiments()
    assert got is not None and got["images"] == N
    want = _brute(run, folder)
    c = got["classifier"]
    assert c["examples"] == want["examples"] == N
    assert [c["accuracy"], c["background_masked"], c["foreground_masked"]] == pytest.approx(
        list(want["accuracy"]), abs=1e-6)
    assert got["cls"]["blocks"] == [0, 1] and got["cls"]["examples"] == N
    assert got["cls"]["kl"] == pytest.approx(want["kl"], rel=1e-3, abs=1e-6)
    assert got["cls"]["agreement"] == pytest.approx(want["agreement"], abs=1e-6)
    assert got["cls"]["kl"][-1] > 0  # the output reads the last CLS state


def test_batch_size_and_resume(folder, monkeypatch):
    first = _run(folder, "b", index_batch_size=5)
    run_index(first)
    want = read_json(first.store.experiments_path)
    # another batch size, killed in pass 2 after its checkpoint, then resumed
    run = _run(folder, "c", index_batch_size=3)
    real = experiments.kl_and_agreement
    calls = {"n": 0}

    def dying(plain, changed):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(plain, changed)

    monkeypatch.setattr(experiments, "kl_and_agreement", dying)
    with pytest.raises(KeyboardInterrupt):
        run_index(run)
    assert not run.store.experiments_path.exists()
    state = run.store.experiments_work_dir / "state.npz"
    with np.load(state) as z:
        assert int(z["phase"]) == 2 and int(z["consumed"]) > 0
    monkeypatch.setattr(experiments, "kl_and_agreement", real)
    run_index(_run(folder, "c", fresh=False, index_batch_size=3))
    got = read_json(run.store.experiments_path)
    assert got["classifier"] == want["classifier"]
    assert got["cls"]["agreement"] == want["cls"]["agreement"]
    assert got["cls"]["kl"] == pytest.approx(want["cls"]["kl"], rel=1e-4, abs=1e-6)
    assert not run.store.experiments_work_dir.exists()


def test_no_matching_head_no_classifier(tmp_path):
    run = tiny_run(tmp_path / "d", "synthetic:6", channels="0:2")  # 1000 classes, no masks
    run_index(run)
    got = run.store.experiments()
    assert got["classifier"] is None and got["cls"]["examples"] == 6
