"""What the inference API reads: the record, a batch of them, and what is wrong with them.

`Record` is one forest cell's 12 features. Its fields document the canonical form (ranges,
vocabularies) for the OpenAPI document; the values themselves go through
`schema.validate_record` first, so the API accepts and normalises exactly what ingest does
(`"Comanche"`, soil `29`, `"7745"` or `"C7745"`, numbers sent as strings) and a bad record
is answered with the schema's own message for each bad field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic import model_validator as _model_validator

from covertype import schema
from covertype.errors import BadInput, CovertypeError
from covertype.serve.responses import Problem, Problems

# The first row of the real covtype file (UCI Cover_Type 1: Spruce/Fir, class 0).
EXAMPLE = {
    "Elevation": 3156,
    "Aspect": 287,
    "Slope": 7,
    "Horizontal_Distance_To_Hydrology": 579,
    "Vertical_Distance_To_Hydrology": 9,
    "Horizontal_Distance_To_Roadways": 2844,
    "Hillshade_9am": 200,
    "Hillshade_Noon": 240,
    "Hillshade_3pm": 179,
    "Horizontal_Distance_To_Fire_Points": 283,
    "Wilderness_Area": "Commanche",
    "Soil_Type": "C7756",
}
# Its second row (UCI Cover_Type 3: Ponderosa Pine, class 2).
EXAMPLE_2 = {
    "Elevation": 2324,
    "Aspect": 351,
    "Slope": 11,
    "Horizontal_Distance_To_Hydrology": 162,
    "Vertical_Distance_To_Hydrology": 48,
    "Horizontal_Distance_To_Roadways": 424,
    "Hillshade_9am": 199,
    "Hillshade_Noon": 221,
    "Hillshade_3pm": 159,
    "Horizontal_Distance_To_Fire_Points": 552,
    "Wilderness_Area": "Cache",
    "Soil_Type": "C2702",
}
RECORD_SHAPE = f"a JSON object with the 12 features {', '.join(schema.FEATURES)}"


# What a record already in the canonical form holds: the fast path of `_normalise`.
_RANGES = tuple((f.name, f.low, f.high) for f in schema.NUMERIC_FIELDS)
_WILDERNESS = frozenset(schema.WILDERNESS_AREAS)
_SOILS = frozenset(schema.SOIL_TYPES)


def _canonical(data: Mapping) -> bool:
    """Whether `data` is exactly the 12 fields, each already as `schema.validate_record`
    returns it (what a client of the API sends): then normalising would change nothing,
    and costs a quarter of the route's own time."""
    if len(data) != len(schema.FEATURES):
        return False
    for name, low, high in _RANGES:
        value = data.get(name)
        if type(value) is not int or not low <= value <= high:
            return False
    wilderness, soil = data.get(schema.WILDERNESS), data.get(schema.SOIL)
    return (
        type(wilderness) is str
        and wilderness in _WILDERNESS
        and type(soil) is str
        and soil in _SOILS
    )


class _RecordBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @_model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> dict:
        if type(data) is dict and _canonical(data):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a record must be {RECORD_SHAPE}; got {_json_type(data)}")
        return schema.validate_record(data)  # RecordError lists every bad field


def _numeric_field(field: schema.IntField) -> tuple[type, Any]:
    return int, Field(ge=field.low, le=field.high, description=f"{field.allowed}")


# The fields as one dict of Any, for mypy: it checks the values of a `**` against every
# keyword of create_model (`__base__`, `__doc__`...), and a Literal of the schema's tuples
# is no type it knows.
_FIELDS: dict[str, Any] = {
    **{f.name: _numeric_field(f) for f in schema.NUMERIC_FIELDS},
    "Wilderness_Area": (
        Literal[schema.WILDERNESS_AREAS],
        Field(description=schema.WILDERNESS_ALLOWED),
    ),
    "Soil_Type": (
        Literal[schema.SOIL_TYPES],
        Field(description=schema.SOIL_ALLOWED + " (normalised to the C-code)"),
    ),
}
Record = create_model(
    "Record",
    __base__=_RecordBase,
    __doc__="One forest cell: the 12 features (field names and order as the data source's).",
    **_FIELDS,
)
RECORDS = TypeAdapter(list[Record])


def problems(errors: list[dict]) -> list[Problem]:
    """pydantic's errors, with each bad field of a record spelled out as the schema says."""
    out: list[Problem] = []
    for error in errors:
        loc = list(error.get("loc", ()))
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, schema.RecordError):
            out += [
                Problem(
                    loc=[*loc, bad.field],
                    msg=str(bad),
                    type="missing" if bad.problem == "is missing" else "invalid_field",
                    field=bad.field,
                    input=bad.value,
                    problem=bad.problem,
                    allowed=bad.allowed,
                )
                for bad in cause.errors
            ]
            continue
        message = str(error.get("msg", ""))
        if isinstance(cause, ValueError):  # our own message, without pydantic's prefix
            message = str(cause)
        elif error.get("type") == "missing" and loc == ["body"]:  # no body, or JSON null
            message = f"the body is empty; send a record: {RECORD_SHAPE}"
        given = {"input": error["input"]} if "input" in error and _is_json(error["input"]) else {}
        out.append(Problem(loc=loc, msg=message, type=str(error.get("type", "invalid")), **given))
    return out


def problems_body(problems: list[Problem]) -> dict:
    """The 422 body: each problem with the fields it was given (unset ones are left out);
    a NaN or an infinity the client sent (Python's JSON reads them) is answered as null."""
    return Problems(detail=problems).model_dump(mode="json", exclude_unset=True)


class TooLarge(CovertypeError):
    """More records, or a longer body, than COVERTYPE_SERVE_MAX_BATCH allows (HTTP 413)."""

    status = 413


class InvalidRecords(BadInput):
    """Bad record(s): each problem names its field and what is allowed (HTTP 422)."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.msg for p in problems))
        self.problems = problems

    def body(self) -> dict:
        return problems_body(self.problems)


def parse_batch(body: bytes, max_batch: int) -> list:
    """A JSON list of records → validated Records; TooLarge past `max_batch`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRecords(
            [Problem(loc=["body"], msg=f"body is not valid JSON: {error}", type="json_invalid")]
        ) from None
    if not isinstance(data, list):
        raise InvalidRecords(
            [
                Problem(
                    loc=["body"],
                    msg=f"a batch must be a JSON list of records ({RECORD_SHAPE}); "
                    f"got {_json_type(data)}",
                    type="list_type",
                )
            ]
        )
    if len(data) > max_batch:
        raise TooLarge(
            f"a batch of {len(data)} records is over the maximum of {max_batch} "
            "(COVERTYPE_SERVE_MAX_BATCH); split it"
        )
    try:
        return RECORDS.validate_python(data)
    except ValidationError as error:
        raise InvalidRecords(
            problems([{**e, "loc": ["body", *e["loc"]]} for e in error.errors(include_url=False)])
        ) from None


def _json_type(value: object) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        bytes: "a body that is not JSON (or not sent as Content-Type: application/json)",
    }
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _is_json(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
