"""The prediction routes' JSON, written from parts encoded once per model version."""

from __future__ import annotations

import json

from covertype import schema
from covertype.serve.responses import Prediction


class Answers:
    """The /predict answer's JSON, written by hand from parts encoded once per version
    (pydantic would cost more than the model): `Prediction`'s fields, in its order."""

    def __init__(self, version: str):
        self.heads = [
            Prediction(cover_type=k, cover_type_name=name, model_version=version)
            .model_dump_json(exclude={"probabilities"})
            .encode()[:-1]
            + b',"probabilities":'
            for k, name in enumerate(schema.COVER_TYPE_NAMES)
        ]
        self.keys = [json.dumps(name) + ":" for name in schema.COVER_TYPE_NAMES]

    def probabilities(self, proba) -> str:
        if proba is None:
            return "null"
        pairs = zip(self.keys, proba.tolist(), strict=True)
        return "{" + ",".join([key + repr(p) for key, p in pairs]) + "}"

    def one(self, label: int, proba) -> bytes:
        return self.heads[label] + self.probabilities(proba).encode() + b"}"

    def many(self, labels: list[int], proba) -> bytes:
        rows = [None] * len(labels) if proba is None else proba
        return b"[" + b",".join([self.one(k, p) for k, p in zip(labels, rows, strict=True)]) + b"]"
