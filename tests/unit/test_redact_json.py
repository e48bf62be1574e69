"""``json_needs_redaction`` (the MCP replies' one-pass check over their JSON text) against
``redact`` (the field-by-field pass) on a generated corpus: whenever ``redact`` would change a
document, the JSON check must say so; and on ordinary replies it must say no (else the fast
path is never taken)."""

from __future__ import annotations

import random

import orjson
import pytest

from taoskills.security.redact import json_needs_redaction, redact

SECRET = 'Öl"mü\\gel\n-99z'  # a quote, a backslash, non-ASCII and a newline (escaped or multi-byte in JSON), no key word
VALUES = [SECRET, "plain-secret-value"]

CLEAN = [
    "train",
    "/data/images_train",
    "${oc.env:TAO_ENCRYPTION_KEY,tlt_encode}",
    "lr 1.0e-4, see https://docs.nvidia.com/tao",
    "key points",
    "max_tokens 256",
    "",
    "ü ñ 日本",
]
DIRTY = [
    SECRET,
    "plain-secret-value",
    f"prefix {SECRET} suffix",
    "https://bob:pw@host/p",
    'x\n"s3://AKIAABCDEFGHIJKLMNOP:zz@bucket',
    "\nAKIAABCDEFGHIJKLMNOP",
    "tab\tASIAABCDEFGHIJKLMNOP end",
]
CLEAN_KEYS = ["num_epochs", "keypoints", "max_tokens", "text_encoder_type", "tokens_positive", "monkey", "passes"]
SECRET_KEYS = ["api_key", "NGC_API_KEY", "encryption_key", "aws.secret_access_key", "db-password", "token", "hf_token"]
SAFE_UNDER_SECRET_KEY = [None, "", True, False, "${oc.env:NGC_API_KEY}", "tlt_encode", {"nested": 1}, []]
LITERAL_UNDER_SECRET_KEY = ["literal", 12345, 1.5, "$(echo hi)"]


def _doc(rng: random.Random, depth: int = 0) -> object:
    kind = rng.random()
    if depth > 3 or kind < 0.35:
        return rng.choice([*CLEAN, *CLEAN, 0, 2.5, None, True, -7])
    if kind < 0.55:
        return [_doc(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    out = {}
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(CLEAN_KEYS)
        if rng.random() < 0.15:
            key = rng.choice(SECRET_KEYS)
            out[key] = rng.choice(SAFE_UNDER_SECRET_KEY)
        else:
            out[key] = _doc(rng, depth + 1)
    return out


def _plant(rng: random.Random, doc: object) -> object:
    """``doc`` with one dirty string or one literal secret-key value put somewhere inside."""
    dirty = {rng.choice(SECRET_KEYS): rng.choice(LITERAL_UNDER_SECRET_KEY)} if rng.random() < 0.4 else rng.choice(DIRTY)
    if isinstance(doc, dict) and doc and rng.random() < 0.7:
        key = rng.choice(list(doc))
        doc[key] = _plant(rng, doc[key])
        return doc
    if isinstance(doc, list) and doc and rng.random() < 0.7:
        i = rng.randrange(len(doc))
        doc[i] = _plant(rng, doc[i])
        return doc
    return {"wrapped": [doc, dirty]}


@pytest.mark.parametrize("seed", range(4))
def test_json_check_flags_every_document_redact_would_change(seed):
    rng = random.Random(seed)
    changed = flagged_clean = 0
    for _ in range(400):
        doc = _doc(rng)
        if rng.random() < 0.5:
            doc = _plant(rng, doc)
        text = orjson.dumps(doc)
        if redact(doc, VALUES) != doc:
            changed += 1
            assert json_needs_redaction(text, VALUES), text
        elif json_needs_redaction(text, VALUES):
            flagged_clean += 1
    assert changed > 100, changed  # the corpus really plants secrets
    assert flagged_clean < 40, flagged_clean  # and the check is not just "always True"


def test_clean_documents_pass_without_the_full_pass():
    spec = {"encryption_key": "${oc.env:TAO_ENCRYPTION_KEY,tlt_encode}", "train": {"num_epochs": 10, "lr": 1e-4}}
    reply = {"spec": spec, "notes": ["keypoints and max_tokens are not secrets"], "api_key": None, "token": ""}
    assert not json_needs_redaction(orjson.dumps(reply), VALUES)
    assert json_needs_redaction(orjson.dumps({**reply, "api_key": "literal"}), VALUES)
    assert json_needs_redaction(orjson.dumps({**reply, "spec": {"hf_token": 42}}), VALUES)
    assert json_needs_redaction(orjson.dumps({"notes": [f"x{SECRET}y"]}), VALUES)
