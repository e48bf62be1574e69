"""Grounding DINO multi-span positives (TAO ODVG grounding ``tokens_positive``): reading, targets,
label-map rows and the loss (no training)."""

from __future__ import annotations

import copy
import json
import types

import pytest
import torch

from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino import spec as S
from taoskills.engine.grounding_dino import synthetic as Y
from taoskills.engine.grounding_dino import text_encoder as T
from taoskills.errors import PreflightError

pytestmark = pytest.mark.torch  # needs the engine extra (torch, transformers)

HELD_OUT = ("red square",)


def _cfg(paths):
    cfg = copy.deepcopy(S.DEFAULTS)
    cfg["dataset"]["train_data_sources"] = [{"image_dir": str(paths["images"]), "json_file": str(paths["odvg"]), "label_map": ""}]
    cfg["dataset"]["augmentation"].update(
        scales=[48], train_random_resize=[48], train_random_crop_min=48, train_random_crop_max=48, random_resize_max_size=48
    )
    cfg["dataset"]["augmentation"]["horizontal_flip_prob"] = 0.0
    return cfg


def _tokens(paths, records, cfg, tok, i=0):
    """(caption, per box the tokens its token map marks) of TrainSet item ``i`` through TrainCollate."""
    item = D.TrainSet(records, cfg)[i]
    batch = D.TrainCollate(tok, {**cfg, "model": {**cfg["model"], "max_text_len": 64}})([item])
    ids = batch["input_ids"][0]
    rows = batch["labels"][0]["token_map"]
    return item, [[tok.convert_ids_to_tokens(int(ids[t])) for t in row.nonzero().flatten()] for row in rows]


@pytest.mark.parametrize("mode", ["words", "pairs"])
def test_span_regions_are_positive_for_every_occurrence_of_their_words(tmp_path, mode):
    classes = Y.pairs(without=HELD_OUT)
    assert len(classes) == 8 and "red square" not in classes
    caption, where = Y.span_caption(classes, mode)
    assert "red square" not in caption and all(caption[s:e] == w for w, sp in where.items() for s, e in sp)
    paths = Y.write_shapes(tmp_path, n=6, size=48, classes=classes, spans=mode, max_objects=2)
    row = json.loads(paths["odvg"].read_text().splitlines()[0])
    region = row["grounding"]["regions"][0]
    assert {row["grounding"]["caption"][s:e] for s, e in region["tokens_positive"]} == set(region["phrase"].split())
    records, vocab = D.read_odvg(_cfg(paths))
    words = ["blue", "circle", "green", "red", "square", "triangle"]
    assert vocab == (words if mode == "words" else sorted(classes))  # the caption's phrases; no held-out pair
    tok = T.load_tokenizer(str(T.write_text_encoder(tmp_path / "bert", Y.vocabulary_texts(Y.pairs()))))
    (image, target, text), marked = _tokens(paths, records, _cfg(paths), tok)
    assert sorted(p.strip() for p in text.split(".") if p.strip()) == vocab  # positives + the caption's negatives
    assert target["class_labels"].shape == (len(records[0]["names"]),)
    for box, toks in zip(records[0]["names"], marked):
        colour, shape = {p[s:e] for p, s, e in box}
        occurrences = [w for phrase in text.split(".") for w in phrase.split() if w in (colour, shape)]
        assert sorted(toks) == sorted(occurrences) and {colour, shape} == set(toks)


def test_single_phrase_targets_are_unchanged(tmp_path):
    paths = Y.write_shapes(tmp_path, n=4, size=48, max_objects=3)
    cfg = _cfg(paths)
    cfg["dataset"]["train_data_sources"][0]["label_map"] = str(paths["label_map"])
    records, _ = D.read_odvg(cfg)
    assert all(ps == D.whole(ps[0][0]) for r in records for ps in r["names"])
    tok = T.load_tokenizer(str(T.write_text_encoder(tmp_path / "bert", Y.vocabulary_texts())))
    (_, target, _), marked = _tokens(paths, records, cfg, tok)
    assert target["positive_spans"] == [[]] * len(target["class_labels"]) and marked == [[]] * len(marked)


@pytest.mark.parametrize(
    "spans,needle",
    [
        ([[40, 99]], "outside the caption"),
        ([[3, 3]], "outside the caption"),
        ([[3, 6]], "phrase separators"),
        ([[0, 0]], "outside"),
        ("red", "not a non-empty list"),
    ],
)
def test_bad_tokens_positive_names_the_field_and_fix(tmp_path, spans, needle):
    paths = Y.write_shapes(tmp_path, n=1, size=48, classes=("red circle",), spans="words", max_objects=1)
    row = json.loads(paths["odvg"].read_text())
    row["grounding"]["regions"][0]["tokens_positive"] = spans
    paths["odvg"].write_text(json.dumps(row) + "\n")
    with pytest.raises(PreflightError) as err:
        D.read_odvg(_cfg(paths))
    assert err.value.field == "dataset.train_data_sources[0].json_file"
    assert "tokens_positive" in str(err.value) and needle in str(err.value) and "[start, end]" in err.value.fix


def test_token_map_rows_replace_the_phrase_row_of_their_boxes():
    from taoskills.engine.grounding_dino.loss import span_rows

    mp = torch.zeros(3, 8, dtype=torch.long)
    mp[0, 1], mp[1, 3], mp[2, 5] = 1, 1, 1
    own = torch.zeros(2, 8, dtype=torch.long)
    own[1, [1, 5]] = 1  # box 1: the first token of phrase 0 and of phrase 2
    labels = [
        {"class_labels": torch.tensor([2, 0]), "boxes": torch.rand(2, 4), "token_map": own},
        {"class_labels": torch.tensor([1]), "boxes": torch.rand(1, 4), "token_map": torch.zeros(1, 8, dtype=torch.long)},
    ]
    maps, targets = span_rows((mp, mp), labels)
    assert maps[0].shape == (4, 8) and maps[0][3].nonzero().flatten().tolist() == [1, 5]
    assert targets[0]["class_labels"].tolist() == [2, 3]
    assert maps[1] is mp and targets[1]["class_labels"].tolist() == [1]
    assert labels[0]["class_labels"].tolist() == [2, 0]  # inputs untouched
    offsets = torch.tensor([[0, 0], [0, 3], [4, 10], [11, 12], [0, 0]])  # [CLS] red circle . [SEP]
    assert D.token_map(offsets, [[(4, 10)], [], [(0, 3), (4, 10)]], 6).tolist() == [
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
    ]


def _config(**over):
    base = dict(
        class_cost=1.0,
        bbox_cost=5.0,
        giou_cost=2.0,
        focal_alpha=0.25,
        auxiliary_loss=True,
        two_stage=True,
        bbox_loss_coefficient=5.0,
        giou_loss_coefficient=2.0,
        decoder_layers=2,
    )
    return types.SimpleNamespace(**{**base, **over})


def _outputs(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    T, Q, L = 8, 5, 2
    ids = torch.tensor([[101, 1030, 1012, 1031, 1012, 1032, 1012, 102]] * batch)
    from transformers.models.grounding_dino.modeling_grounding_dino import build_label_maps, build_text_mask

    cls = torch.randn(L, batch, Q, T, generator=g)
    coord = torch.rand(L, batch, Q, 4, generator=g) * 0.5 + 0.25
    label_maps = build_label_maps(cls[-1], ids)
    text_mask = build_text_mask(cls[-1], torch.ones_like(ids))
    enc = (torch.randn(batch, Q, T, generator=g), torch.rand(batch, Q, 4, generator=g) * 0.5 + 0.25)
    labels = [
        {"class_labels": torch.tensor([b % 3, (b + 1) % 3]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]])}
        for b in range(batch)
    ]
    return dict(
        logits=cls[-1],
        labels=labels,
        device="cpu",
        pred_boxes=coord[-1],
        config=_config(),
        label_maps=label_maps,
        text_mask=text_mask,
        outputs_class=cls,
        outputs_coord=coord,
        encoder_logits=enc[0],
        encoder_pred_boxes=enc[1],
    )


def test_loss_equals_transformers_for_two_images_and_reads_each_images_own_map():
    pytest.importorskip("scipy")
    from transformers.loss.loss_grounding_dino import GroundingDinoForObjectDetectionLoss, GroundingDinoImageLoss

    from taoskills.engine.grounding_dino.loss import PerImageLoss, grounding_loss

    # up to two images transformers' target lookup is right: same loss terms
    args = _outputs(2)
    ours, theirs = grounding_loss(**args), GroundingDinoForObjectDetectionLoss(**args)
    assert ours[1].keys() == theirs[1].keys() and {"loss_ce_0", "loss_ce_enc", "loss_giou_enc"} <= ours[1].keys()
    for key in ours[1]:
        assert float(ours[1][key]) == pytest.approx(float(theirs[1][key]), rel=1e-5), key
    assert float(ours[0]) == pytest.approx(float(theirs[0]), rel=1e-5)
    # from the third image on transformers reads the rows of another image's caption; ours its own
    maps = tuple(torch.eye(6, dtype=torch.long)[[b, b + 3]] for b in range(3))
    outputs = {"logits": torch.zeros(3, 2, 6), "label_maps": maps}
    targets = [{"class_labels": torch.tensor([0])} for _ in range(3)]
    indices = [(torch.tensor([0]), torch.tensor([0]))] * 3
    theirs_oh = GroundingDinoImageLoss(None, 0.25, [])._get_target_classes_one_hot(outputs, targets, indices)
    ours_oh = PerImageLoss(None, 0.25, [])._get_target_classes_one_hot(outputs, targets, indices)
    assert ours_oh[:, 0].argmax(-1).tolist() == [0, 1, 2]
    assert theirs_oh[:, 0].argmax(-1).tolist() == [0, 1, 1]  # the transformers 5.23 lookup this module replaces


def test_multi_span_box_is_trained_towards_both_words():
    pytest.importorskip("scipy")
    from taoskills.engine.grounding_dino.loss import grounding_loss

    args = _outputs(1, seed=3)
    args["labels"] = [{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    args["logits"] = args["logits"].clone().requires_grad_(True)
    one = grounding_loss(**{**args, "config": _config(auxiliary_loss=False, two_stage=False)})[1]["loss_ce"]
    (grad_one,) = torch.autograd.grad(one, args["logits"])
    args["labels"][0]["token_map"] = torch.tensor([[0, 1, 0, 0, 0, 1, 0, 0]])  # phrases 0 and 2: tokens 1 and 5
    both = grounding_loss(**{**args, "config": _config(auxiliary_loss=False, two_stage=False)})[1]["loss_ce"]
    (grad_both,) = torch.autograd.grad(both, args["logits"])
    # a negative gradient = a positive target: token 5 (phrase 2) is positive for the matched query only
    # once the box's token map names it; token 1 (phrase 0) in both cases
    assert (grad_one[0, :, 5] < 0).sum() == 0 and (grad_one[0, :, 1] < 0).sum() == 1
    q = (grad_both[0, :, 5] < 0).nonzero().flatten().tolist()
    assert len(q) == 1 and grad_both[0, q[0], 1] < 0


def test_shape_word_rows_and_bars(tmp_path):
    classes = Y.pairs(colours=("black",), shapes=("circle", "bar", "triangle"))
    paths = Y.write_shapes(tmp_path, n=8, size=48, classes=classes, spans="shapes", max_objects=2)
    records, vocab = D.read_odvg(_cfg(paths))
    assert vocab == ["bar", "circle", "triangle"]  # the colour is drawn, never named
    assert all(len(ps) == 1 and ps[0] == D.whole(ps[0][0])[0] for r in records for ps in r["names"])
    gt = json.loads(paths["coco"].read_text())
    bar = next(i for i, c in enumerate(classes) if c.endswith("bar"))
    for a in gt["annotations"]:
        w, h = a["bbox"][2:]
        assert h == (max(3, round(w * Y.BAR_ASPECT)) if a["category_id"] == bar else w)
