"""MAE evaluate action.

* ``train.stage: finetune`` — top-1 accuracy on the class folders of ``dataset.val_data_sources``:
  KPIs ``ACC_all`` (all images), ``ACC_<class>`` (per class folder) and ``val_loss`` (cross-entropy);
  ``<results_dir>/evaluate/per_class_accuracy.json`` lists ``{class, images, correct, accuracy}``.
* ``train.stage: pretrain`` — the masked-reconstruction loss of the pretrain checkpoint on every
  image under ``dataset.val_data_sources`` (seeded masks): KPI ``val_loss``.

Images use the eval transform (short side to input_size/0.875, centre crop).
"""

from __future__ import annotations

import json
import logging

import torch

from taoskills.engine.contract import ActionContext
from taoskills.engine.mae import data as D
from taoskills.engine.mae.common import load_model, pick_device
from taoskills.engine.mae.spec import check
from taoskills.errors import PreflightError

log = logging.getLogger("taoskills.engine.mae")


def _loader(cfg, samples):
    ev = cfg["evaluate"]
    bs = ev["batch_size"] if ev["batch_size"] > 0 else cfg["dataset"]["batch_size"]
    tf = D.EvalTransform(cfg["dataset"]["augmentation"])
    return torch.utils.data.DataLoader(D.ImageSet(samples, tf), batch_size=bs, shuffle=False, num_workers=0)


def run(ctx: ActionContext) -> dict[str, float]:
    """Evaluate ``evaluate.checkpoint``; returns the KPIs above."""
    cfg = ctx.cfg
    check(cfg, "evaluate")
    ev, ds = cfg["evaluate"], cfg["dataset"]
    device = pick_device(want_gpu=True, gpu_id=(ev["gpu_ids"] or [0])[0], num_gpus=ev["num_gpus"], field="evaluate.num_gpus")
    stage = cfg["train"]["stage"]
    if stage == "pretrain":
        files = D.list_images(ds["val_data_sources"], field="dataset.val_data_sources")
        D.check_readable(files, field="dataset.val_data_sources")
        net = load_model(cfg, str(ev["checkpoint"]), field_name="evaluate.checkpoint", want="pretrain").model.to(device)
        gen = torch.Generator().manual_seed(0)
        total, n = 0.0, 0
        with torch.no_grad():
            for x, _ in _loader(cfg, [(f, -1) for f in files]):
                noise = torch.rand(x.shape[0], _num_mask_units(net, x), generator=gen).to(device)
                loss, _, _ = net(x.to(device), noise=noise)
                total, n = total + float(loss) * x.shape[0], n + x.shape[0]
        kpi = {"val_loss": total / n}
        ctx.status.write("RUNNING", f"Masked-reconstruction loss on {n} images: {kpi['val_loss']:.4f}.", kpi=kpi)
        return kpi
    classes, samples = D.class_folders(ds["val_data_sources"], field="dataset.val_data_sources")
    D.check_readable([f for f, _ in samples], field="dataset.val_data_sources")
    loaded = load_model(cfg, str(ev["checkpoint"]), field_name="evaluate.checkpoint", want="classifier")
    if loaded.classes and loaded.classes != classes:
        raise PreflightError(
            f"dataset.val_data_sources has classes {classes[:10]} but the checkpoint was trained on {loaded.classes[:10]}.",
            field="dataset.val_data_sources",
            fix="evaluate on a folder with the training set's class sub-folder names.",
        )
    net = loaded.model.to(device)
    k = len(classes)
    correct, count = torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)
    loss_sum = 0.0
    with torch.no_grad():
        for x, y in _loader(cfg, samples):
            logits = net(x.to(device)).float().cpu()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            pred = logits.argmax(-1)
            count += torch.bincount(y, minlength=k)
            correct += torch.bincount(y[pred == y], minlength=k)
    kpi = {"ACC_all": float(correct.sum() / count.sum()), "val_loss": loss_sum / float(count.sum())}
    rows = []
    for i, name in enumerate(classes):
        acc = float(correct[i] / count[i])
        kpi[f"ACC_{name}"] = acc
        rows.append({"class": name, "images": int(count[i]), "correct": int(correct[i]), "accuracy": acc})
    (ctx.results_dir / "per_class_accuracy.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    msg = f"Top-1 accuracy {kpi['ACC_all']:.4f} on {int(count.sum())} images of {k} classes."
    log.info(msg)
    ctx.status.write("RUNNING", msg, kpi=kpi)
    return kpi


def _num_mask_units(net, x) -> int:
    """Length of the noise vector the pretraining model draws its mask from."""
    from taoskills.engine.mae.model import FCMAE

    h, w = x.shape[-2:]
    if isinstance(net, FCMAE):
        return (h // FCMAE.PATCH) * (w // FCMAE.PATCH)
    conf = net.net.config
    if net.fam == "vit":
        return (h // conf.patch_size) * (w // conf.patch_size)
    unit = [s * m for s, m in zip(conf.patch_stride, conf.masked_unit_size)]
    return (h // unit[0]) * (w // unit[1])
