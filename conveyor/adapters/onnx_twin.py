"""The ONNX twin of a registered model: the fitted sklearn Pipeline exported with skl2onnx, run with onnxruntime,
and checked for parity against the Pipeline on the version's test rows before anything may use it.

Interface for scorers (batch scoring, the online service):

    twin = OnnxTwin.from_bytes(data)          # or ModelRegistry.load_twin(meta): signed, checksum and parity checked
    twin.feature_names                        # the raw feature columns it reads, in order
    twin.kind                                 # "classifier" or "regressor" (from the graph's outputs)
    twin.predict_proba(frame)                 # classifier: (rows, classes) float64, the Pipeline's column order
    twin.predict(frame)                       # regressor: (rows,) float64

`frame` is a pandas DataFrame holding (at least) `feature_names` with the raw values the Pipeline takes: numbers
(ints or floats, NaN for missing) and category strings (None/NaN for missing). Both are thread-safe
(onnxruntime's `InferenceSession.run` is); one `OnnxTwin` can serve concurrent requests. With these two methods
a twin fits `ModelTask.outputs` like the Pipeline does, so scorers get the task's output columns from either.

Parity (checked at registration on the version's test rows): a classifier's largest absolute difference over
every class probability (binary: P(positive)) must be within `twin.parity_tolerance`; a regressor's largest
absolute prediction difference RELATIVE to the target's scale (the standard deviation of the Pipeline's
predictions on the parity rows; 1 when they are constant), so the same tolerance holds for a target in cents
or in millions. The record keeps the absolute difference and the scale (`max_abs_diff`, `scale`): the
absolute difference allowed is `tolerance * scale`.

The model bytes describe themselves: the graph has one input per feature column (float32 numbers, strings for
categories) and the ONNX metadata (`conveyor.inputs`) names each column's kind and the value a missing category
becomes. That value is the Pipeline's own fitted most-frequent imputation: onnxruntime has no string `Imputer`,
so the twin fills missing categories before the graph, and the parity check proves it equals the Pipeline.

skl2onnx is imported only to export and onnxruntime only to run (each when first needed), so a scoring process
on the sklearn runtime pays for neither.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any, Literal

import numpy as np
import pandas as pd

from conveyor.domain.failures import DeterministicFailure

TWIN_FILE = "model.onnx"
_INPUTS_KEY = "conveyor.inputs"
_LIBRARIES = ("skl2onnx", "onnx", "onnxruntime")


class TwinUnavailable(DeterministicFailure, RuntimeError):
    """A version's ONNX twin cannot be used (not exported, failed parity, unreadable): the message says which."""


@dataclass(frozen=True)
class TwinRecord:
    """What the registry records about a version's twin (in metadata.json, so it is signed with it)."""

    status: Literal["passed", "failed", "not_exported"]
    reason: str
    tolerance: float
    max_abs_diff: float | None = None
    rows_checked: int = 0
    sha256: str | None = None  # of model.onnx; set by the registry when it stores the file
    key: str | None = None
    library_versions: dict[str, str] = field(default_factory=dict)
    # Regression: the target scale the tolerance is relative to (None: classification, an absolute tolerance).
    scale: float | None = None

    @property
    def allowed_abs_diff(self) -> float:
        """The largest absolute output difference within tolerance (regression: tolerance x scale)."""
        return self.tolerance * (self.scale if self.scale is not None else 1.0)

    @property
    def usable(self) -> bool:
        return self.status == "passed" and self.key is not None and self.sha256 is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TwinRecord:
        if not data:
            return cls("not_exported", "registered without an ONNX twin", tolerance=0.0)
        return cls(**data)


@dataclass(frozen=True)
class TwinExport:
    """An export attempt: the ONNX bytes (None when the conversion itself failed) and its parity record."""

    onnx_bytes: bytes | None
    record: TwinRecord


@dataclass(frozen=True)
class _Input:
    name: str
    kind: Literal["numeric", "categorical"]
    fill: str = ""  # what a missing category becomes before the graph


class OnnxTwin:
    """A verified-to-load ONNX model with sklearn's `predict_proba` (classifier) or `predict` (regressor)
    contract (see the module docstring)."""

    def __init__(self, session: Any, inputs: list[_Input]) -> None:
        self._session = session
        self._inputs = inputs
        self.kind, self._output = _output_of(session)

    @classmethod
    def from_bytes(cls, data: bytes, threads: int = 1) -> OnnxTwin:
        """Load the twin from its `model.onnx` bytes (no checks beyond onnxruntime's own: use the registry's
        `load_twin` for a registered version)."""
        import onnxruntime as ort  # heavy: only processes that run a twin import it

        options = ort.SessionOptions()
        # Few threads on purpose: the machine's cores are shared with other scorers and tasks.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for every kind of bad graph
            raise TwinUnavailable(f"{TWIN_FILE}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from None
        props = session.get_modelmeta().custom_metadata_map
        if _INPUTS_KEY not in props:
            raise TwinUnavailable(f"{TWIN_FILE}: no {_INPUTS_KEY!r} metadata (not exported by Conveyor)")
        return cls(session, [_Input(**spec) for spec in json.loads(props[_INPUTS_KEY])])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self._inputs)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Classifier: (rows, classes) float64 probabilities in the Pipeline's class order (binary: column 1 =
        P(positive))."""
        self._require("classifier", "predict_proba")
        if len(frame) == 0:
            shape = next(o.shape for o in self._session.get_outputs() if o.name == self._output)
            classes = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else 2
            return np.empty((0, classes), dtype="float64")
        return np.asarray(self._run(frame), dtype="float64")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Regressor: (rows,) float64 predictions."""
        self._require("regressor", "predict")
        if len(frame) == 0:
            return np.empty(0, dtype="float64")
        return np.asarray(self._run(frame), dtype="float64").reshape(-1)

    def _require(self, kind: str, method: str) -> None:
        if self.kind != kind:
            raise TwinUnavailable(f"ONNX twin: {method} needs a {kind} twin; this one is a {self.kind}")

    def _run(self, frame: pd.DataFrame) -> Any:
        missing = [spec.name for spec in self._inputs if spec.name not in frame.columns]
        if missing:
            raise KeyError(f"ONNX twin input: frame lacks feature column(s) {missing}")
        (values,) = self._session.run([self._output], _feeds(frame, self._inputs))
        return values


def _output_of(session: Any) -> tuple[Literal["classifier", "regressor"], str]:
    """skl2onnx names a classifier's probabilities `probabilities` and a regressor's prediction `variable`."""
    names = [o.name for o in session.get_outputs()]
    if "probabilities" in names:
        return "classifier", "probabilities"
    if "variable" in names:
        return "regressor", "variable"
    raise TwinUnavailable(f"{TWIN_FILE}: neither a 'probabilities' nor a 'variable' output (outputs: {names})")


# Up to this many rows (a request's), the feeds are built from Python values in one pass over the frame: pandas
# per-column conversions cost ~0.1 ms each whatever the row count, most of a one-row prediction's time.
SMALL_FRAME_ROWS = 64


def _feeds(frame: pd.DataFrame, inputs: list[_Input]) -> dict[str, np.ndarray]:
    if len(frame) <= SMALL_FRAME_ROWS:
        return _small_feeds(frame, inputs)
    feeds = {}
    for spec in inputs:
        column = frame[spec.name]
        if spec.kind == "numeric":
            values = pd.to_numeric(column, errors="raise").to_numpy(dtype="float32", na_value=np.nan)
        else:
            values = column.astype(object).where(column.notna(), spec.fill).astype(str).to_numpy()
        feeds[spec.name] = values.reshape(-1, 1)
    return feeds


def _small_feeds(frame: pd.DataFrame, inputs: list[_Input]) -> dict[str, np.ndarray]:
    """The same feeds as the column-wise path (missing: NaN / the input's fill; numbers as float32; categories
    as text), from the frame's values as Python objects."""
    columns = {spec.name: frame[spec.name].tolist() for spec in inputs}  # to_dict("list"): ~4x the time
    feeds = {}
    for spec in inputs:
        values = columns[spec.name]
        if spec.kind == "numeric":
            array = np.array([np.nan if _missing(v) else float(v) for v in values], dtype="float32")
        else:
            array = np.array([spec.fill if _missing(v) else str(v) for v in values], dtype=object)
        feeds[spec.name] = array.reshape(-1, 1)
    return feeds


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


# ---- export -------------------------------------------------------------------------------------------------
def export_twin(model: Any, rows: pd.DataFrame, tolerance: float, threads: int = 1) -> TwinExport:
    """Convert the fitted Pipeline to ONNX and check parity on `rows` (its test rows, raw feature columns):
    the largest difference of the Pipeline's and the twin's outputs (module docstring) must be within
    `tolerance`. Never raises for a model it cannot
    convert: that is a failed record with the reason, so the version is still registered (without a twin)."""
    try:
        onnx_bytes = _convert(model)
    except Exception as exc:  # skl2onnx raises many kinds (NotImplementedError, RuntimeError, TypeError...)
        reason = f"skl2onnx could not convert {type(model).__name__}: {type(exc).__name__}: {exc}"
        return TwinExport(None, TwinRecord("failed", reason[:2000], tolerance, library_versions=_library_versions()))
    return TwinExport(onnx_bytes, check_parity(model, onnx_bytes, rows, tolerance, threads))


def check_parity(model: Any, onnx_bytes: bytes, rows: pd.DataFrame, tolerance: float, threads: int = 1) -> TwinRecord:
    """The parity record of `onnx_bytes` against the fitted `model` on `rows`."""
    versions = _library_versions()
    if len(rows) == 0:
        return TwinRecord("failed", "no rows to check parity on", tolerance, library_versions=versions)
    try:
        twin = OnnxTwin.from_bytes(onnx_bytes, threads)
        expected, actual = _both_outputs(model, twin, rows)
    except Exception as exc:  # a graph onnxruntime rejects at run time is a failed twin, not a crash
        reason = f"the twin cannot score the parity rows: {type(exc).__name__}: {exc}"
        return TwinRecord("failed", reason[:2000], tolerance, rows_checked=len(rows), library_versions=versions)
    diff = np.abs(actual - expected)
    worst = float("inf") if np.isnan(diff).any() else float(diff.max())  # a NaN output is never parity
    if twin.kind == "regressor":
        spread = float(np.std(expected))
        scale = spread if np.isfinite(spread) and spread > 0 else 1.0
        passed = worst / scale <= tolerance
        what = f"max |prediction difference| {worst:.3g} = {worst / scale:.3g} x the target scale {scale:.4g}"
    else:
        scale, passed = None, worst <= tolerance
        what = f"max |{'P(positive)' if expected.ndim == 1 else 'class probability'} difference| {worst:.3g}"
    reason = f"{what} over {len(rows)} rows {'within' if passed else 'ABOVE'} tolerance {tolerance:g}"
    status: Literal["passed", "failed"] = "passed" if passed else "failed"
    return TwinRecord(status, reason, tolerance, worst, len(rows), library_versions=versions, scale=scale)


def _both_outputs(model: Any, twin: OnnxTwin, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(Pipeline, twin) outputs on `rows`: binary P(positive) (rows,); multiclass every class probability
    (rows, classes); a regressor's predictions (rows,)."""
    if twin.kind == "regressor":
        if not hasattr(model, "predict") or hasattr(model, "predict_proba"):
            raise TypeError("the twin is a regressor but the Pipeline is a classifier")
        return np.asarray(model.predict(rows), dtype="float64"), twin.predict(rows)
    expected = np.asarray(model.predict_proba(rows), dtype="float64")
    actual = twin.predict_proba(rows)
    if actual.shape != expected.shape:
        raise ValueError(f"the twin gives {actual.shape[1]} class probabilities, the Pipeline {expected.shape[1]}")
    if expected.shape[1] == 2:
        return expected[:, 1], actual[:, 1]
    return expected, actual


def _convert(model: Any) -> bytes:
    from skl2onnx import convert_sklearn  # heavy: only the registering process imports it
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    from conveyor.adapters.skl2onnx_fixes import install

    install()
    portable, inputs = _portable(model)
    types = [
        (spec.name, StringTensorType([None, 1]) if spec.kind == "categorical" else FloatTensorType([None, 1]))
        for spec in inputs
    ]
    # zipmap (probabilities as a list of dicts) exists only for classifiers; skl2onnx refuses it for regressors.
    options = {"zipmap": False} if hasattr(portable, "predict_proba") else None
    onx = convert_sklearn(portable, initial_types=types, options=options)
    entry = onx.metadata_props.add()
    entry.key, entry.value = _INPUTS_KEY, json.dumps([asdict(spec) for spec in inputs])
    return bytes(onx.SerializeToString())


def _portable(model: Any) -> tuple[Any, list[_Input]]:
    """A copy of the Pipeline without its string imputers (onnxruntime has none), and the graph's inputs: one per
    column of the leading ColumnTransformer; a column is categorical when its branch encodes categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if not isinstance(model, Pipeline) or not isinstance(model.steps[0][1], ColumnTransformer):
        raise NotImplementedError("the twin exports a Pipeline whose first step is a ColumnTransformer")
    portable = copy.deepcopy(model)
    inputs: list[_Input] = []
    names = list(getattr(model, "feature_names_in_", []))
    for _, branch, selected in portable.steps[0][1].transformers_:
        columns = [names[c] if isinstance(c, int | np.integer) and names else c for c in selected]
        if isinstance(branch, str):  # "drop" / "passthrough" remainder
            if branch == "passthrough":
                inputs += [_Input(str(c), "numeric") for c in columns]
            continue
        steps = branch.steps if isinstance(branch, Pipeline) else [("", branch)]
        if not any(isinstance(step, OneHotEncoder | OrdinalEncoder) for _, step in steps):
            inputs += [_Input(str(c), "numeric") for c in columns]
            continue
        fills = {str(c): "" for c in columns}
        kept = []
        for name, step in steps:
            if isinstance(step, SimpleImputer) and step.statistics_.dtype == object:
                fills.update({str(c): str(v) for c, v in zip(columns, step.statistics_, strict=True)})
            else:
                kept.append((name, step))
        if isinstance(branch, Pipeline):
            branch.steps = kept
        inputs += [_Input(c, "categorical", fill) for c, fill in fills.items()]
    return portable, inputs


@functools.cache
def _library_versions() -> dict[str, str]:
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found
