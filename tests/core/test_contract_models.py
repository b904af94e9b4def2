"""Every contract model agrees with its JSON Schema: on the examples, and on mutations of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from breachwatch.core.events import MODEL_BY_TOPIC, SCHEMA_FILE

CONTRACTS = Path(__file__).resolve().parents[2] / "core" / "contracts"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "contracts"


def _schema(topic: str) -> dict:
    return json.loads((CONTRACTS / SCHEMA_FILE[topic]).read_text())


def _examples(topic: str) -> list[dict]:
    lines = (CONTRACTS / "examples" / f"{topic}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _validator(topic: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_schema(topic), format_checker=jsonschema.FormatChecker())


def _model_accepts(topic: str, doc: object) -> bool:
    try:
        MODEL_BY_TOPIC[topic].model_validate_json(json.dumps(doc))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("topic", sorted(MODEL_BY_TOPIC))
def test_examples_valid_against_schema_and_model(topic: str) -> None:
    examples = _examples(topic)
    assert examples
    for doc in examples:
        _validator(topic).validate(doc)
        assert _model_accepts(topic, doc)


@pytest.mark.skipif(not SHARED.exists(), reason="shared contracts not beside the checkout")
def test_project_copy_of_contract_is_unchanged() -> None:
    for name in SCHEMA_FILE.values():
        assert (CONTRACTS / name).read_bytes() == (SHARED / name).read_bytes(), name


@pytest.mark.parametrize("topic", sorted(MODEL_BY_TOPIC))
def test_unknown_fields_are_tolerated(topic: str) -> None:
    doc = dict(_examples(topic)[0], x_new_field={"nested": [1, 2]}, another="v")
    assert _model_accepts(topic, doc)


@pytest.mark.parametrize("topic", sorted(MODEL_BY_TOPIC))
def test_each_required_field_is_required(topic: str) -> None:
    for field in _schema(topic)["required"]:
        doc = copy.deepcopy(_examples(topic)[0])
        doc.pop(field)
        assert not _model_accepts(topic, doc), f"{topic} accepted a message without {field}"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            "",
            "x",
            "2026-11-24T10:15:00Z",
            "2026-11-24T10:15:00",
            "PK",
            "pk",
            "DE-BY",
            "read",
            "export",
            "staff",
            "success",
            "failure",
            "personal",
            "a@b.example",
            "not-an-email",
            "ERROR",
            "support",
        ]
    )
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@pytest.mark.parametrize("topic", sorted(MODEL_BY_TOPIC))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_model_and_schema_agree_on_mutations(topic: str, data: st.DataObject) -> None:
    doc = copy.deepcopy(data.draw(st.sampled_from(_examples(topic))))
    props = sorted(_schema(topic)["properties"])
    field = data.draw(st.sampled_from(props))
    if data.draw(st.booleans()):
        doc[field] = data.draw(JSON_VALUES)
    else:
        doc.pop(field, None)
    schema_ok = not list(_validator(topic).iter_errors(doc))
    model_ok = _model_accepts(topic, doc)
    if model_ok:
        assert schema_ok, f"model accepted what the schema rejects: {doc}"
    elif schema_ok:
        # Two deliberate, documented tightenings: "format" (date-time, email) is asserted by
        # the models, while a draft 2020-12 validator treats it as an annotation; and a float
        # with an integral value (5.0) is refused where the contract says integer.
        value = doc.get(field)
        assert _is_format_field(topic, field) or (isinstance(value, float) and value.is_integer()), doc


def _is_format_field(topic: str, field: str) -> bool:
    spec = _schema(topic)["properties"][field]
    return "format" in spec or field == "contacts"
