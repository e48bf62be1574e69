"""The BERT text encoder of Grounding DINO, from a local folder only (no hub downloads).

``model.text_encoder_type`` names a folder in the Hugging Face layout:

* production: a real ``bert-base-uncased`` copy (``config.json``, ``vocab.txt``,
  ``tokenizer_config.json``, ``model.safetensors`` or ``pytorch_model.bin``) — its weights are
  loaded into the text backbone;
* small runs and tests: :func:`write_text_encoder` writes a WordPiece vocabulary built from the
  captions and label names (their words and characters, split by ``tokenizers``' BERT
  pre-tokenizer) plus a tiny ``BertConfig`` (no weights: the text backbone starts from random
  init).

transformers' Grounding DINO hard-codes bert-base-uncased token ids for its phrase delimiters
(``[CLS]`` 101, ``[SEP]`` 102, ``.`` 1012, ``?`` 1029, ``[PAD]`` 0;
``modeling_grounding_dino.SPECIAL_TOKENS``), so a generated vocabulary keeps those ids and
puts its own tokens from id 1030 on.

A hub name such as ``bert-base-uncased`` is used only when it is already in the local
Hugging Face cache (``local_files_only``); otherwise the error carries the skill's fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from taoskills.errors import SpecError

#: bert-base-uncased ids that transformers' Grounding DINO relies on.
FIXED_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
FIRST_FREE_ID = 1030
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

TEXT_ENCODER_FIX = (
    "set model.text_encoder_type to a local folder holding the BERT text encoder (config.json, vocab.txt and, "
    "for real training, the bert-base-uncased weights), or allow the job network access to the Hugging Face Hub "
    "(TAO engine)."
)


def write_text_encoder(
    folder: str | Path,
    texts: Iterable[str],
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 128,
) -> Path:
    """Write a small offline text encoder folder for ``model.text_encoder_type``.

    ``texts``: captions and label names to take the vocabulary from. The WordPiece vocabulary is
    built, not trained: ``tokenizers``' BERT normalizer (lower case) and pre-tokenizer split the
    texts into words; the vocabulary is every character, every character as a ``##`` continuation
    and every whole word, each group sorted, laid out after bert-base-uncased's special ids
    (:data:`FIXED_IDS`, from id :data:`FIRST_FREE_ID`). So every word of ``texts`` is one token, any
    other word still tokenizes (by characters), and the same texts give the same ids in every
    process. (``tokenizers``' WordPiece trainer breaks ties between equally frequent merges in a
    per-process random order: the same texts gave different vocabularies, hence different
    trainings, from run to run; engine README.)
    Writes ``vocab.txt``, ``tokenizer_config.json`` and ``config.json`` (a ``BertConfig`` of
    ``hidden_size``/``num_layers``/``num_heads``/``intermediate_size``, 512 positions). No weights.
    Returns the folder.
    """
    from tokenizers import normalizers, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = {w for t in texts for w, _ in pre.pre_tokenize_str(norm.normalize_str(str(t)))} - set(FIXED_IDS)
    chars = sorted({c for w in words for c in w} - set(FIXED_IDS))
    learned = [*chars, *(f"##{c}" for c in chars), *sorted(words - set(chars))]
    by_id = {i: t for t, i in FIXED_IDS.items()}
    vocab = [by_id.get(i, f"[unused{i}]") for i in range(FIRST_FREE_ID)] + learned
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 512}), encoding="utf-8"
    )
    from transformers import BertConfig

    BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
    ).save_pretrained(folder)
    return folder


def _where(name: str) -> tuple[str, bool]:
    """(path or hub name, is_local_folder)."""
    p = Path(str(name)).expanduser()
    return (str(p.resolve()), True) if p.is_dir() else (str(name), False)


def load_tokenizer(name: str, *, field: str = "model.text_encoder_type") -> Any:
    """Fast BERT tokenizer of the folder (or cached hub name) ``name``; SpecError with the
    skill's text-encoder fix when it cannot be loaded offline."""
    from transformers import BertTokenizerFast

    where, local = _where(name)
    try:
        tok = BertTokenizerFast.from_pretrained(where, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, ... from transformers
        raise SpecError(
            f"Text encoder loading error: cannot load the tokenizer of {field}={name!r} without network access "
            f"({'folder' if local else 'not a local folder and not in the local Hugging Face cache'}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).",
            field=field,
            fix=TEXT_ENCODER_FIX,
        ) from exc
    ids = tok.convert_tokens_to_ids(list(FIXED_IDS))
    if ids != list(FIXED_IDS.values()) and (not local or len(tok) < FIRST_FREE_ID):
        # transformers 5 returns an empty tokenizer for an uncached hub name instead of failing
        raise SpecError(
            f"Text encoder loading error: {field}={name!r} has no usable vocabulary offline "
            f"({'the folder has no vocab.txt' if local else 'not a local folder and not in the local Hugging Face cache'}).",
            field=field,
            fix=TEXT_ENCODER_FIX,
        )
    if ids != list(FIXED_IDS.values()):
        raise SpecError(
            f"{field}={name!r}: its vocabulary does not keep bert-base-uncased's ids for {list(FIXED_IDS)} "
            f"(got {ids}); Grounding DINO splits phrases on those ids.",
            field=field,
            fix="use the bert-base-uncased vocab.txt, or build the folder with write_text_encoder().",
        )
    return tok


def load_text_config(name: str, *, field: str = "model.text_encoder_type") -> Any:
    """``BertConfig`` of ``name`` (offline); SpecError with the skill's fix when unavailable."""
    from transformers import BertConfig

    where, local = _where(name)
    try:
        return BertConfig.from_pretrained(where, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise SpecError(
            f"Text encoder loading error: cannot load the BERT config of {field}={name!r} offline "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).",
            field=field,
            fix=TEXT_ENCODER_FIX,
        ) from exc


def has_weights(name: str) -> bool:
    """True when the local folder ``name`` holds BERT weights."""
    where, local = _where(name)
    return local and any((Path(where) / f).is_file() for f in WEIGHT_FILES)


def load_text_weights(name: str, *, field: str = "model.text_encoder_type") -> dict[str, Any]:
    """State dict of the BERT weights in folder ``name`` (``BertModel`` keys, pooler dropped)."""
    from transformers import BertModel

    where, _ = _where(name)
    try:
        bert = BertModel.from_pretrained(where, local_files_only=True, add_pooling_layer=False)
    except Exception as exc:  # noqa: BLE001
        raise SpecError(
            f"Text encoder loading error: the weights in {field}={name!r} cannot be loaded ({type(exc).__name__}: {exc}).",
            field=field,
            fix=TEXT_ENCODER_FIX,
        ) from exc
    return bert.state_dict()
