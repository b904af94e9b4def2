"""Signed model files: an HMAC-SHA256 keyed from the environment (BREACHWATCH_MODEL_SIGNING_KEY)
over everything in the file, checked before one byte of it is deserialised, and the
scikit-learn version it was written with, checked against the one installed.

A model file is a magic line, one JSON line of signature fields, then the skops archive::

    BREACHWATCH-MODEL 1
    {"hmac": "...", "key_id": "...", "versions": {"scikit-learn": "1.9.1", "skops": "0.16.0"}}
    <skops archive>

The key id (an HMAC of a fixed label) tells "signed with another key" from "changed after it
was signed"; it reveals nothing about the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

MAGIC = b"BREACHWATCH-MODEL 1\n"
_KEY_ID_LABEL = b"breachwatch:model-signing-key-id"
_ZIP = b"PK\x03\x04"
KEY_SETTING = "BREACHWATCH_MODEL_SIGNING_KEY"


class ModelFileError(Exception):
    """A model file that cannot be trusted or read: wrong format, unknown types, tampered,
    signed with another key, or written by another scikit-learn."""


def library_versions() -> dict[str, str]:
    """The versions a model file records: scikit-learn's estimators must be read by the version
    that wrote them (it gives no guarantee across versions); skops' for the record."""
    import sklearn
    import skops

    return {"scikit-learn": sklearn.__version__, "skops": skops.__version__}


def key_id(key: bytes) -> str:
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def _mac(key: bytes, fields: dict[str, Any], body: bytes) -> str:
    signed = json.dumps({k: v for k, v in fields.items() if k != "hmac"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, MAGIC + signed.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def seal(body: bytes, key: bytes) -> bytes:
    """The file's bytes: ``body`` (a skops archive) with its signature and versions in front."""
    fields: dict[str, Any] = {"key_id": key_id(key), "versions": library_versions()}
    fields["hmac"] = _mac(key, fields, body)
    return MAGIC + json.dumps(fields, sort_keys=True).encode() + b"\n" + body


def _fields(line: bytes, where: str) -> dict[str, Any]:
    try:
        fields = json.loads(line)
    except ValueError:
        raise ModelFileError(f"{where}: the model file's signature line is damaged") from None
    if not (
        isinstance(fields, dict)
        and isinstance(fields.get("hmac"), str)
        and isinstance(fields.get("key_id"), str)
        and isinstance(fields.get("versions"), dict)
    ):
        raise ModelFileError(f"{where}: the model file's signature line is damaged")
    return fields


def unseal(data: bytes, key: bytes, where: str) -> bytes:
    """The skops archive inside a model file's bytes, once its signature and scikit-learn
    version check out; otherwise ``ModelFileError`` saying which check failed and what to do."""
    if not data.startswith(MAGIC):
        if data.startswith(_ZIP):
            raise ModelFileError(
                f"{where}: the model file is not signed (written by an older version): train it again"
                f" (`breachwatch train` signs it with {KEY_SETTING})"
            )
        raise ModelFileError(f"{where}: not a BreachWatch model file")
    line, _, body = data[len(MAGIC) :].partition(b"\n")
    fields = _fields(line, where)
    if not hmac.compare_digest(fields["key_id"], key_id(key)):
        raise ModelFileError(f"{where}: the model file was signed with another key than {KEY_SETTING}")
    if not hmac.compare_digest(fields["hmac"], _mac(key, fields, body)):
        raise ModelFileError(f"{where}: the model file was changed after it was signed (its signature does not match)")
    written, here = fields["versions"].get("scikit-learn"), library_versions()["scikit-learn"]
    if written != here:
        raise ModelFileError(
            f"{where}: the model was written with scikit-learn {written} and this installation has {here};"
            " train it again with this version"
        )
    return body
