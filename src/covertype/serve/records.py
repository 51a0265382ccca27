"""What the inference API reads and writes: the record, the answers, the problems.

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


class _RecordBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @_model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> dict:
        if not isinstance(data, Mapping):
            raise ValueError(f"a record must be {RECORD_SHAPE}; got {_json_type(data)}")
        return schema.validate_record(data)  # RecordError lists every bad field


def _numeric_field(field: schema.IntField) -> tuple[type, Any]:
    return int, Field(ge=field.low, le=field.high, description=f"{field.allowed}")


Record = create_model(
    "Record",
    __base__=_RecordBase,
    __doc__="One forest cell: the 12 features (field names and order as the data source's).",
    **{f.name: _numeric_field(f) for f in schema.NUMERIC_FIELDS},
    Wilderness_Area=(
        Literal[schema.WILDERNESS_AREAS],  # type: ignore[valid-type]
        Field(description=schema.WILDERNESS_ALLOWED),
    ),
    Soil_Type=(
        Literal[schema.SOIL_TYPES],  # type: ignore[valid-type]
        Field(description=schema.SOIL_ALLOWED + " (normalised to the C-code)"),
    ),
)
RECORDS = TypeAdapter(list[Record])


class Prediction(BaseModel):
    cover_type: int = Field(ge=0, le=len(schema.COVER_TYPE_NAMES) - 1, examples=[0])
    cover_type_name: Literal[schema.COVER_TYPE_NAMES] = Field(  # type: ignore[valid-type]
        examples=["Spruce/Fir"]
    )
    model_version: str = Field(description="registry version that made this prediction")


class Problem(BaseModel):
    """One thing wrong with the request: where, and for a field what is allowed."""

    loc: list[str | int] = Field(examples=[["body", "Elevation"]])
    msg: str = Field(
        examples=[
            "Elevation: 999 is out of range; allowed: a whole number of metres from 1000 to 4500"
        ]
    )
    type: str = Field(examples=["invalid_field"])
    field: str | None = None
    input: Any = None
    problem: str | None = None
    allowed: str | None = None


class Problems(BaseModel):
    detail: list[Problem]


class Detail(BaseModel):
    detail: str


def problems(errors: list[dict]) -> list[dict]:
    """pydantic's errors, with each bad field of a record spelled out as the schema says."""
    out: list[dict] = []
    for error in errors:
        loc = list(error.get("loc", ()))
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, schema.RecordError):
            for bad in cause.errors:
                kind = "missing" if bad.problem == "is missing" else "invalid_field"
                out.append(
                    {
                        "loc": [*loc, bad.field],
                        "msg": str(bad),
                        "type": kind,
                        "field": bad.field,
                        "input": bad.value,
                        "problem": bad.problem,
                        "allowed": bad.allowed,
                    }
                )
            continue
        message = str(error.get("msg", ""))
        if isinstance(cause, ValueError):  # our own message, without pydantic's prefix
            message = str(cause)
        elif error.get("type") == "missing" and loc == ["body"]:  # no body, or JSON null
            message = f"the body is empty; send a record: {RECORD_SHAPE}"
        problem = {"loc": loc, "msg": message, "type": str(error.get("type", "invalid"))}
        if "input" in error and _is_json(error["input"]):
            problem["input"] = error["input"]
        out.append(problem)
    return out


class BatchTooLarge(Exception):
    """More records than COVERTYPE_SERVE_MAX_BATCH."""


class BatchInvalid(Exception):
    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__(f"{len(errors)} problems")


def parse_batch(body: bytes, max_batch: int) -> list:
    """A JSON list of records → validated Records; BatchTooLarge past `max_batch`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BatchInvalid(
            [{"loc": ["body"], "msg": f"body is not valid JSON: {error}", "type": "json_invalid"}]
        ) from None
    if not isinstance(data, list):
        raise BatchInvalid(
            [
                {
                    "loc": ["body"],
                    "msg": f"a batch must be a JSON list of records ({RECORD_SHAPE}); "
                    f"got {_json_type(data)}",
                    "type": "list_type",
                }
            ]
        )
    if len(data) > max_batch:
        raise BatchTooLarge(
            f"a batch of {len(data)} records is over the maximum of {max_batch} "
            "(COVERTYPE_SERVE_MAX_BATCH); split it"
        )
    try:
        return RECORDS.validate_python(data)
    except ValidationError as error:
        raise BatchInvalid(
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
