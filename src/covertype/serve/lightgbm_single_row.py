"""LightGBM's single-row fast predict (its C API; not in the Python package's API)."""

from __future__ import annotations

import ctypes
import logging
import threading

import numpy as np

log = logging.getLogger(__name__)


class SingleRow:
    """LGBM_BoosterPredictForMatSingleRowFast with a configuration prepared once.
    Booster.predict builds a predictor on every call, ~50 µs of a ~400 µs row of the
    3,500-tree champion. The configuration holds buffers: one call at a time."""

    def __init__(self, booster, n_features: int):
        from lightgbm.basic import _LIB, _safe_call

        self.lib, self.check, self.booster = _LIB, _safe_call, booster  # config points into it
        self.handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(booster.best_iteration),  # as Booster.predict: <= 0 is all
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self.handle),
            )
        )
        probe = booster.predict(np.zeros((1, n_features)), num_threads=1)
        self.multiclass = probe.ndim == 2
        self.out = np.empty(probe.size, dtype=np.float64)
        self.out_pointer = self.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self.out_length = ctypes.c_int64()
        self.lock = threading.Lock()

    @classmethod
    def create(cls, booster, n_features: int) -> SingleRow | None:
        try:
            return cls(booster, n_features)
        except Exception as error:  # an older or newer LightGBM: Booster.predict serves
            log.info("LightGBM single-row API not used", extra={"error": str(error)})
            return None

    def predict(self, row: np.ndarray) -> np.ndarray:
        row = np.ascontiguousarray(row, dtype=np.float64)
        with self.lock:
            self.check(
                self.lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self.handle,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self.out_length),
                    self.out_pointer,
                )
            )
            result = self.out[: self.out_length.value].copy()
        return result.reshape(1, -1) if self.multiclass else result

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value:
            self.lib.LGBM_FastConfigFree(handle)
