"""Derived numeric features, the first step of every model pipeline.

Trees split on one column at a time, so sums and differences of the distances (and the
straight-line distance to water) are hard for them to learn and cheap to give: on 58k
training rows they lift LightGBM's holdout accuracy from 0.917 to 0.935. This module is
part of the model's contract: a saved pipeline refers to `add_engineered` by name, so the
serving side imports it from here, and `engineer_array` gives the same numbers on plain
NumPy rows for the fast prediction path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from covertype import schema

ENGINEERED = (
    "Hydrology_Distance",
    "Elevation_Minus_Vertical_Hydrology",
    "Elevation_Minus_Horizontal_Hydrology",
    "Hydrology_Plus_Fire",
    "Hydrology_Minus_Fire",
    "Hydrology_Plus_Roadways",
    "Hydrology_Minus_Roadways",
    "Fire_Plus_Roadways",
    "Fire_Minus_Roadways",
)
NUMERIC_OUT = (*schema.NUMERIC, *ENGINEERED)
_HH, _HV = "Horizontal_Distance_To_Hydrology", "Vertical_Distance_To_Hydrology"
_ROAD, _FIRE = "Horizontal_Distance_To_Roadways", "Horizontal_Distance_To_Fire_Points"
# The input fields each derived feature is made of (explanations share its contribution).
MADE_OF = dict(
    zip(
        ENGINEERED,
        [(_HH, _HV), ("Elevation", _HV), ("Elevation", _HH), (_HH, _FIRE), (_HH, _FIRE),
         (_HH, _ROAD), (_HH, _ROAD), (_FIRE, _ROAD), (_FIRE, _ROAD)],
        strict=True,
    )
)  # fmt: skip

_N = {name: i for i, name in enumerate(schema.NUMERIC)}


def engineer_array(numeric: np.ndarray) -> np.ndarray:
    """n×10 numeric features (schema.NUMERIC order) → n×9 derived features (ENGINEERED)."""
    x = np.asarray(numeric, dtype=np.float64)
    hydro_h = x[:, _N["Horizontal_Distance_To_Hydrology"]]
    hydro_v = x[:, _N["Vertical_Distance_To_Hydrology"]]
    road = x[:, _N["Horizontal_Distance_To_Roadways"]]
    fire = x[:, _N["Horizontal_Distance_To_Fire_Points"]]
    elevation = x[:, _N["Elevation"]]
    return np.column_stack(
        [
            np.hypot(hydro_h, hydro_v),
            elevation - hydro_v,
            elevation - 0.2 * hydro_h,
            hydro_h + fire,
            hydro_h - fire,
            hydro_h + road,
            hydro_h - road,
            fire + road,
            fire - road,
        ]
    )


def add_engineered(frame: pd.DataFrame) -> pd.DataFrame:
    """The 12 feature columns plus ENGINEERED (a FunctionTransformer's function)."""
    derived = engineer_array(frame[list(schema.NUMERIC)].to_numpy())
    extra = pd.DataFrame(derived, columns=list(ENGINEERED), index=frame.index)
    return pd.concat([frame[list(schema.FEATURES)], extra], axis=1)


def engineered_names(transformer, input_features=None) -> np.ndarray:
    """feature_names_out for the FunctionTransformer (so pipelines keep column names)."""
    return np.array([*schema.FEATURES, *ENGINEERED], dtype=object)
