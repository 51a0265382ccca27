"""The record of one forest cell: field names, order, types, ranges and vocabularies.

Every other module takes the fields from here. Values arrive as strings (the source API
serves strings) or JSON numbers; `check_value` normalises one value or raises a `FieldError`
that names the field and what is allowed; `validate_rows` does the same for a whole batch,
vectorised, with the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from covertype.errors import BadInput


@dataclass(frozen=True)
class IntField:
    name: str
    low: int
    high: int
    unit: str

    @property
    def dtype(self) -> type[np.integer]:
        """The smallest NumPy integer that holds the range (int16 is SMALLINT in the DB)."""
        return next(t for t in (np.int8, np.int16, np.int32) if np.iinfo(t).max >= self.high)

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

# Every accepted spelling (lower case, spaces collapsed) of each wilderness area.
WILDERNESS_SPELLINGS = {name.lower(): name for name in WILDERNESS_AREAS} | {
    "comanche": "Commanche",
    "comanche peak": "Commanche",
    "commanche peak": "Commanche",
    "cache la poudre": "Cache",
}
_SOIL_BY_ELU = {code: f"C{code}" for code in SOIL_ELU_CODES}


class FieldError(BadInput, ValueError):
    """One bad value: which field, what it was, and what is allowed (a ValueError too:
    pydantic turns it into a validation error where a model's validator raises it)."""

    def __init__(self, field: str, value: object, problem: str, allowed: str):
        self.field, self.value, self.problem, self.allowed = field, value, problem, allowed
        super().__init__(f"{field}: {value!r} {problem}; allowed: {allowed}")


class RecordError(BadInput, ValueError):
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
        return WILDERNESS_SPELLINGS[key]
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


class Validated(NamedTuple):
    clean: pd.DataFrame  # typed FIELDS columns; index: positions in the input
    rejected: list[Rejected]
    texts: list[str]  # canonical text of each clean row: its values joined by ","


def canonical_text(values: Iterable[object]) -> str:
    """The text that identifies a record: its canonical values, in FIELDS order."""
    return ",".join(map(str, values))


_STR = np.dtypes.StringDType()


def validate_rows(rows: Iterable[Sequence[object]]) -> Validated:
    """Split course-format rows (13 values in FIELDS order) into a clean typed frame, the
    rejected rows with their reasons, and each clean row's canonical text. Vectorised per
    column (a batch is 40k rows); a flagged value gets its message from `check_value`."""
    rows = list(rows)
    width = len(FIELDS)
    reasons: dict[int, list[str]] = {}
    raw = _as_table(rows, width)
    if raw is not None:  # every row a list of 13 plain values: the usual batch
        keep = np.arange(len(rows))
    else:
        expected = f"expected a list of {width} values ({', '.join(FIELDS)})"
        reasons = {
            i: [f"row {_shape(row)}; {expected}"]
            for i, row in enumerate(rows)
            if type(row) not in (list, tuple) or len(row) != width
        }
        keep = np.array([i for i in range(len(rows)) if i not in reasons], dtype=np.int64)
        raw = np.empty((len(keep), width), dtype=object)
        if len(keep):
            raw[:] = [rows[i] for i in keep]

    columns: dict[str, np.ndarray] = {}
    as_sent = np.ones(len(keep), dtype=bool)  # every value already in canonical form
    for j, name in enumerate(FIELDS):
        values = raw[:, j]
        if name in CATEGORICAL:
            columns[name], bad = _map_categorical(name, values)
            as_sent &= values == columns[name]
        else:
            columns[name], bad, canonical = _check_ints(_INT_FIELDS[name], values)
            as_sent &= canonical
        for k in np.flatnonzero(bad):
            reasons.setdefault(int(keep[k]), []).append(_message(name, values[k]))

    good = ~np.isin(keep, list(reasons))
    clean = pd.DataFrame({name: column[good] for name, column in columns.items()}, index=keep[good])
    # Rows sent canonical (the usual case) keep their own text; the others are re-rendered.
    sent = as_sent[good]
    positions = keep[good].tolist()
    texts = [",".join(rows[i]) if ok else "" for i, ok in zip(positions, sent, strict=True)]
    redo = np.flatnonzero(~sent)
    for k, typed in zip(redo, clean.iloc[redo].itertuples(index=False), strict=True):
        texts[k] = canonical_text(typed)
    rejected = [Rejected(i, rows[i], "; ".join(reasons[i])) for i in sorted(reasons)]
    return Validated(clean, rejected, texts)


def _as_table(rows: list, width: int) -> np.ndarray | None:
    """rows as an n×width object array in one C call, or None if any row is not a flat
    list of `width` values (then each row is looked at)."""
    try:
        table = np.array(rows, dtype=object)
    except ValueError:  # ragged
        return None
    return table if table.ndim == 2 and table.shape[1] == width else None


def _shape(row: object) -> str:
    return (
        f"has {len(row)} values" if isinstance(row, list | tuple) else f"is a {type(row).__name__}"
    )


def _to_float(value: Any) -> float:
    """float(value), NaN for whatever float() refuses (Any: it is the judge)."""
    if isinstance(value, bool):  # a JSON true is not a number here
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _check_ints(field: IntField, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parsed values, which are bad, which were sent in canonical form (str(int))."""
    if set(map(type, values)) <= {str}:
        text = values.astype(_STR)
        try:  # int() semantics in C: the common case of plain whole numbers
            numbers = text.astype(np.int64)
        except (ValueError, OverflowError):
            pass
        else:
            bad = (numbers < field.low) | (numbers > field.high)
            canonical = text == numbers.astype(_STR)
            return np.where(bad, 0, numbers).astype(field.dtype), bad, canonical
    # float() of every value, as _parse_int does ("2596.0", 1e3, JSON numbers, junk).
    numbers = np.array([_to_float(v) for v in values], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = (
            ~np.isfinite(numbers)
            | (numbers % 1 != 0)
            | (numbers < field.low)
            | (numbers > field.high)
        )
    canonical = np.zeros(len(values), dtype=bool)
    return np.where(bad, 0, numbers).astype(field.dtype), bad, canonical


def _map_categorical(name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # check_value reads categorical values through str(), so map each distinct text once.
    texts = values if set(map(type, values)) <= {str} else np.array(list(map(str, values)))
    mapping: dict[str, int | str | None] = {}  # check_value's answer, None if refused
    for text in pd.unique(texts):
        try:
            mapping[text] = check_value(name, text)
        except FieldError:
            mapping[text] = None
    mapped = pd.Series(texts, dtype=object).map(mapping).to_numpy(dtype=object)
    return mapped, pd.isna(mapped)


def _message(name: str, value: object) -> str:
    try:
        check_value(name, value)
    except FieldError as error:
        return str(error)
    raise AssertionError(f"{name}={value!r} was flagged but is valid")  # the two paths disagree
