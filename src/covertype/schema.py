"""The record of one forest cell: field names, order, types, ranges and vocabularies.

Every other module takes the fields from here. Values arrive as strings (the source API
serves strings) or JSON numbers; `check_value` normalises one value or raises a `FieldError`
that names the field and what is allowed; `validate_rows` does the same for a whole batch,
vectorised, with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class IntField:
    name: str
    low: int
    high: int
    unit: str

    @property
    def allowed(self) -> str:
        return f"a whole number of {self.unit} from {self.low} to {self.high}"


NUMERIC_FIELDS: tuple[IntField, ...] = (
    IntField("Elevation", 1000, 4500, "metres"),
    IntField("Aspect", 0, 360, "degrees"),
    IntField("Slope", 0, 90, "degrees"),
    IntField("Horizontal_Distance_To_Hydrology", 0, 10000, "metres"),
    IntField("Vertical_Distance_To_Hydrology", -1000, 1000, "metres"),
    IntField("Horizontal_Distance_To_Roadways", 0, 10000, "metres"),
    IntField("Hillshade_9am", 0, 255, "index units"),
    IntField("Hillshade_Noon", 0, 255, "index units"),
    IntField("Hillshade_3pm", 0, 255, "index units"),
    IntField("Horizontal_Distance_To_Fire_Points", 0, 10000, "metres"),
)
NUMERIC = tuple(f.name for f in NUMERIC_FIELDS)
WILDERNESS = "Wilderness_Area"
SOIL = "Soil_Type"
LABEL = "Cover_Type"
CATEGORICAL = (WILDERNESS, SOIL)
FEATURES = (*NUMERIC, *CATEGORICAL)
FIELDS = (*FEATURES, LABEL)

# UCI Wilderness_Area1..4, in order.
WILDERNESS_AREAS = ("Rawah", "Neota", "Commanche", "Cache")
# ELU codes of UCI Soil_Type1..40, in order.
SOIL_ELU_CODES = (
    2702, 2703, 2704, 2705, 2706, 2717, 3501, 3502, 4201, 4703,
    4704, 4744, 4758, 5101, 5151, 6101, 6102, 6731, 7101, 7102,
    7103, 7201, 7202, 7700, 7701, 7702, 7709, 7710, 7745, 7746,
    7755, 7756, 7757, 7790, 8703, 8707, 8708, 8771, 8772, 8776,
)  # fmt: skip
SOIL_TYPES = tuple(f"C{code}" for code in SOIL_ELU_CODES)
# Cover_Type 0..6 is UCI's 1..7 minus one.
COVER_TYPE_NAMES = (
    "Spruce/Fir",
    "Lodgepole Pine",
    "Ponderosa Pine",
    "Cottonwood/Willow",
    "Aspen",
    "Douglas-fir",
    "Krummholz",
)
LABEL_FIELD = IntField(LABEL, 0, len(COVER_TYPE_NAMES) - 1, "class (UCI 1–7 minus one)")

_WILDERNESS_ALIASES = {name.lower(): name for name in WILDERNESS_AREAS} | {
    "comanche": "Commanche",
    "comanche peak": "Commanche",
    "commanche peak": "Commanche",
    "cache la poudre": "Cache",
}
_SOIL_BY_ELU = {code: f"C{code}" for code in SOIL_ELU_CODES}


class FieldError(ValueError):
    """One bad value: which field, what it was, and what is allowed."""

    def __init__(self, field: str, value: object, problem: str, allowed: str):
        self.field, self.value, self.problem, self.allowed = field, value, problem, allowed
        super().__init__(f"{field}: {value!r} {problem}; allowed: {allowed}")


class RecordError(ValueError):
    """A record with one or more bad fields; `errors` lists each."""

    def __init__(self, errors: Sequence[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


WILDERNESS_ALLOWED = (
    f"one of {', '.join(WILDERNESS_AREAS)} (also Comanche, Commanche Peak, Cache la Poudre; "
    "any case)"
)
SOIL_ALLOWED = "a soil code C2702…C8776 (see schema.SOIL_TYPES), its ELU number, or UCI soil 1–40"


def _parse_int(field: IntField, value: object) -> int:
    if isinstance(value, bool):
        raise FieldError(field.name, value, "is not a whole number", field.allowed)
    if isinstance(value, int):
        number = value
    else:
        try:
            as_float = float(str(value).strip())
        except ValueError:
            raise FieldError(field.name, value, "is not a whole number", field.allowed) from None
        if not as_float.is_integer():
            raise FieldError(field.name, value, "is not a whole number", field.allowed)
        number = int(as_float)
    if not field.low <= number <= field.high:
        raise FieldError(field.name, value, "is out of range", field.allowed)
    return number


def normalise_wilderness(value: object) -> str:
    key = " ".join(str(value).split()).lower()
    try:
        return _WILDERNESS_ALIASES[key]
    except KeyError:
        raise FieldError(
            WILDERNESS, value, "is not a known wilderness area", WILDERNESS_ALLOWED
        ) from None


def normalise_soil(value: object) -> str:
    text = str(value).strip().upper()
    if text.startswith("SOIL_TYPE"):
        text = text.removeprefix("SOIL_TYPE")
    coded = text.startswith("C")
    try:
        number = int(text[1:] if coded else text)
    except ValueError:
        raise FieldError(SOIL, value, "is not a known soil type", SOIL_ALLOWED) from None
    if not coded and 1 <= number <= len(SOIL_ELU_CODES):
        return SOIL_TYPES[number - 1]
    if number in _SOIL_BY_ELU:
        return _SOIL_BY_ELU[number]
    raise FieldError(SOIL, value, "is not a known soil type", SOIL_ALLOWED)


_INT_FIELDS = {f.name: f for f in (*NUMERIC_FIELDS, LABEL_FIELD)}


def check_value(field: str, value: object) -> int | str:
    """Normalise one value of `field` or raise FieldError."""
    if field == WILDERNESS:
        return normalise_wilderness(value)
    if field == SOIL:
        return normalise_soil(value)
    return _parse_int(_INT_FIELDS[field], value)


def validate_record(record: Mapping[str, object], *, with_label: bool = False) -> dict:
    """Normalise a mapping of field name to value; RecordError lists every bad field."""
    names = FIELDS if with_label else FEATURES
    errors: list[FieldError] = []
    clean: dict[str, int | str] = {}
    for name in names:
        if name not in record:
            errors.append(FieldError(name, None, "is missing", _allowed(name)))
            continue
        try:
            clean[name] = check_value(name, record[name])
        except FieldError as error:
            errors.append(error)
    unknown = sorted(set(record) - set(names))
    errors += [
        FieldError(name, record[name], "is not a field", f"only {', '.join(names)}")
        for name in unknown
    ]
    if errors:
        raise RecordError(errors)
    return clean


def _allowed(field: str) -> str:
    if field == WILDERNESS:
        return WILDERNESS_ALLOWED
    if field == SOIL:
        return SOIL_ALLOWED
    return _INT_FIELDS[field].allowed


@dataclass
class Rejected:
    index: int  # position in the input
    row: object
    reason: str


def validate_rows(rows: Iterable[Sequence[object]]) -> tuple[pd.DataFrame, list[Rejected]]:
    """Split course-format rows (13 values in FIELDS order) into a clean typed frame and
    the rejected rows with their reasons. The frame keeps the input positions as index."""
    rows = list(rows)
    width = len(FIELDS)
    expected = f"expected a list of {width} values ({', '.join(FIELDS)})"
    rejected = [
        Rejected(i, row, f"row {_shape(row)}; {expected}")
        for i, row in enumerate(rows)
        if not isinstance(row, list | tuple) or len(row) != width
    ]
    bad_shape = {r.index for r in rejected}
    keep = [i for i in range(len(rows)) if i not in bad_shape]
    raw = pd.DataFrame([rows[i] for i in keep], index=keep, columns=list(FIELDS), dtype=object)

    clean = pd.DataFrame(index=raw.index)
    reasons = pd.Series("", index=raw.index, dtype=object)
    for name in FIELDS:
        column = raw[name]
        if name in CATEGORICAL:
            values, bad = _map_categorical(name, column)
        else:
            values, bad = _check_ints(_INT_FIELDS[name], column)
        clean[name] = values
        for i in bad.index[bad]:
            reasons[i] += ("; " if reasons[i] else "") + _message(name, column[i])
    invalid = reasons != ""
    rejected += [Rejected(i, rows[i], reasons[i]) for i in reasons.index[invalid]]
    rejected.sort(key=lambda r: r.index)
    clean = clean[~invalid]
    for field in NUMERIC_FIELDS:
        clean[field.name] = clean[field.name].astype(np.int16 if field.high < 2**15 else np.int32)
    clean[LABEL] = clean[LABEL].astype(np.int8)
    return clean, rejected


def _shape(row: object) -> str:
    return (
        f"has {len(row)} values" if isinstance(row, list | tuple) else f"is a {type(row).__name__}"
    )


def _check_ints(field: IntField, column: pd.Series) -> tuple[pd.Series, pd.Series]:
    # bool is an int to pandas; a JSON true is not a number here.
    is_bool = column.map(lambda v: isinstance(v, bool)).astype(bool)
    text = column.where(is_bool == False, None).astype(str).str.strip()  # noqa: E712
    numbers = pd.to_numeric(text, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers < field.low) | (numbers > field.high)
    return numbers.where(~bad, 0).astype(np.int64), bad


def _map_categorical(name: str, column: pd.Series) -> tuple[pd.Series, pd.Series]:
    mapping: dict[object, str | None] = {}
    for value in column.unique():
        try:
            mapping[value] = check_value(name, value)
        except FieldError:
            mapping[value] = None
    values = column.map(mapping)
    return values, values.isna()


def _message(name: str, value: object) -> str:
    try:
        check_value(name, value)
    except FieldError as error:
        return str(error)
    raise AssertionError(f"{name}={value!r} was flagged but is valid")  # the two paths disagree
