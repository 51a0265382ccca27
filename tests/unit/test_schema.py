import pytest

from covertype import schema
from covertype.schema import FieldError, RecordError

GOOD = [2596, 51, 3, 258, 0, 510, 221, 232, 148, 6279, "Rawah", "C7745", 4]


def test_fields_are_the_design_order():
    assert schema.FIELDS == (
        "Elevation", "Aspect", "Slope", "Horizontal_Distance_To_Hydrology",
        "Vertical_Distance_To_Hydrology", "Horizontal_Distance_To_Roadways", "Hillshade_9am",
        "Hillshade_Noon", "Hillshade_3pm", "Horizontal_Distance_To_Fire_Points",
        "Wilderness_Area", "Soil_Type", "Cover_Type",
    )  # fmt: skip
    assert len(schema.SOIL_TYPES) == 40 and schema.SOIL_TYPES[28] == "C7745"
    assert schema.WILDERNESS_AREAS == ("Rawah", "Neota", "Commanche", "Cache")
    assert schema.COVER_TYPE_NAMES[0] == "Spruce/Fir" and len(schema.COVER_TYPE_NAMES) == 7


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Rawah", "Rawah"), ("rawah", "Rawah"), ("  NEOTA ", "Neota"),
        ("Commanche", "Commanche"), ("Comanche", "Commanche"), ("Commanche Peak", "Commanche"),
        ("comanche  peak", "Commanche"), ("Cache", "Cache"), ("Cache la Poudre", "Cache"),
        ("CACHE LA POUDRE", "Cache"),
    ],
)  # fmt: skip
def test_wilderness_spellings_normalise(spelling, canonical):
    assert schema.check_value("Wilderness_Area", spelling) == canonical


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("C7745", "C7745"), ("c7745", "C7745"), (" C7745 ", "C7745"), ("7745", "C7745"),
        (7745, "C7745"), ("29", "C7745"), (29, "C7745"), ("1", "C2702"), ("40", "C8776"),
        ("2702", "C2702"), ("Soil_Type29", "C7745"),
    ],
)  # fmt: skip
def test_soil_spellings_normalise(spelling, canonical):
    assert schema.check_value("Soil_Type", spelling) == canonical


@pytest.mark.parametrize(
    ("value", "number"), [("2596", 2596), (" 2596 ", 2596), ("2596.0", 2596), (2596, 2596)]
)
def test_numbers_accept_strings_and_whole_floats(value, number):
    assert schema.check_value("Elevation", value) == number


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("Elevation", "999", "out of range; allowed: a whole number of metres from 1000 to 4500"),
        ("Elevation", "4501", "out of range"),
        ("Aspect", "12.5", "is not a whole number; allowed: a whole number of degrees from 0"),
        ("Slope", "abc", "is not a whole number"),
        ("Slope", True, "is not a whole number"),
        ("Slope", None, "is not a whole number"),
        ("Vertical_Distance_To_Hydrology", "-1001", "from -1000 to 1000"),
        ("Hillshade_Noon", "256", "from 0 to 255"),
        ("Cover_Type", "7", "from 0 to 6"),
        ("Wilderness_Area", "Yellowstone", "allowed: one of Rawah, Neota, Commanche, Cache"),
        ("Soil_Type", "C9999", "is not a known soil type; allowed: a soil code C2702"),
        ("Soil_Type", "41", "UCI soil 1–40"),
        ("Soil_Type", "0", "is not a known soil type"),
        ("Soil_Type", "", "is not a known soil type"),
    ],
)
def test_rejections_name_the_field_and_what_is_allowed(field, value, says):
    with pytest.raises(FieldError) as caught:
        schema.check_value(field, value)
    message = str(caught.value)
    assert message.startswith(f"{field}: {value!r} ")
    assert says in message
    assert caught.value.field == field


def test_record_lists_every_bad_missing_and_unknown_field():
    record = dict(zip(schema.FEATURES, GOOD, strict=False))
    record["Elevation"] = 100
    record["Soil_Type"] = "mud"
    del record["Slope"]
    record["Colour"] = "green"
    with pytest.raises(RecordError) as caught:
        schema.validate_record(record)
    assert [e.field for e in caught.value.errors] == ["Elevation", "Slope", "Soil_Type", "Colour"]
    assert "Slope: None is missing" in str(caught.value)
    assert "Colour: 'green' is not a field" in str(caught.value)


def test_record_normalises_a_good_record():
    record = dict(zip(schema.FEATURES, [str(v) for v in GOOD], strict=False))
    record["Wilderness_Area"] = "comanche peak"
    record["Soil_Type"] = "29"
    clean = schema.validate_record(record)
    assert clean["Wilderness_Area"] == "Commanche" and clean["Soil_Type"] == "C7745"
    assert clean["Elevation"] == 2596


def test_validate_rows_splits_good_from_bad_with_the_same_messages():
    rows = [
        [str(v) for v in GOOD],
        ["3000", "10", "5", "0", "0", "0", "0", "0", "0", "0", "cache la poudre", "1", "0"],
        [*GOOD[:-1], "9"],  # label out of range
        GOOD[:5],  # too short
        [*GOOD[:11], "C1234", "0"],  # unknown soil
        ["99", *GOOD[1:10], "Nowhere", *GOOD[11:]],  # two bad fields
        "not a row",
    ]
    clean, rejected, texts = schema.validate_rows(rows)
    assert list(clean.index) == [0, 1]
    assert texts == [",".join(map(str, GOOD)), "3000,10,5,0,0,0,0,0,0,0,Cache,C2702,0"]
    assert clean.loc[1, "Wilderness_Area"] == "Cache" and clean.loc[1, "Soil_Type"] == "C2702"
    assert clean["Elevation"].tolist() == [2596, 3000]
    by_index = {r.index: r.reason for r in rejected}
    assert sorted(by_index) == [2, 3, 4, 5, 6]
    assert by_index[2] == str(_error("Cover_Type", "9"))
    assert by_index[3].startswith("row has 5 values; expected a list of 13 values (Elevation,")
    assert by_index[4] == str(_error("Soil_Type", "C1234"))
    assert by_index[5] == f"{_error('Elevation', '99')}; {_error('Wilderness_Area', 'Nowhere')}"
    assert by_index[6].startswith("row is a str; expected a list of 13 values")


def test_validate_rows_of_an_empty_batch():
    clean, rejected, texts = schema.validate_rows([])
    assert clean.empty and rejected == [] and texts == []
    assert list(clean.columns) == list(schema.FIELDS)


def _error(field, value) -> FieldError:
    try:
        schema.check_value(field, value)
    except FieldError as error:
        return error
    raise AssertionError("valid")


def test_validate_rows_renders_non_canonical_rows_canonically():
    sent = [
        [" 2596", "51.0", 3, "+258", "0", "0510", "221", "232", "148", "6279", "RAWAH", "29", "4"],
        ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745", "4"],
        [{"a": 1}, ["x"], None, *GOOD[3:]],  # unhashable and null values are rejected, not raised
    ]
    _, rejected, texts = schema.validate_rows(sent)
    assert texts == ["2596,51,3,258,0,510,221,232,148,6279,Rawah,C7745,4"] * 2
    assert [r.index for r in rejected] == [2]
    assert rejected[0].reason.startswith("Elevation: {'a': 1} is not a whole number")
    assert "Aspect: ['x'] is not a whole number" in rejected[0].reason
    assert "Slope: None is not a whole number" in rejected[0].reason


def test_scalar_and_batch_validation_agree_on_every_value():
    samples = ["12", " 12 ", "12.0", "1e3", "1_000", "-0", "+5", "0x10", "", "nan", "inf", "Rawah",
               "29", "C7745", 12, 12.5, True, None, "4501", "-1001", "256"]  # fmt: skip
    for j, field in enumerate(schema.FIELDS):
        rows = [[*GOOD[:j], value, *GOOD[j + 1 :]] for value in samples]
        clean, rejected, _ = schema.validate_rows(rows)
        reasons = {r.index: r.reason for r in rejected}
        for i, value in enumerate(samples):
            try:
                expected = schema.check_value(field, value)
            except FieldError as error:
                assert reasons[i] == str(error), (field, value)
            else:
                assert i not in reasons and clean.loc[i, field] == expected, (field, value)
