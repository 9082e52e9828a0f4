"""Configuration of the dataset (`configs/dataset.yaml`, loaded as `settings.dataset`): its columns, task, source,
features with their valid values, and every choice that names those features (slices, behavioural checks, the
model card's text and sensitive attributes), each checked at load against the features.

Each default is written once, here, with what it means (`Field(description=...)`).
"""

from __future__ import annotations

import zoneinfo
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from configs.systems import StrictSection


class CompositeKeyUnsupported(ValueError):
    """A path that handles one key column met a dataset with a composite key."""


class FeatureDriftThresholds(StrictSection):
    """A feature's own drift thresholds; a threshold left out is the `drift` section's (psi_threshold,
    ks_threshold)."""

    psi: float | None = Field(default=None, gt=0)
    ks: float | None = Field(default=None, gt=0, le=1, description="numeric features only: the KS statistic")


class FeatureSpec(StrictSection):
    name: str
    dtype: Literal["int64", "float64", "category", "bool"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    max_null_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="share of missing values this feature may have in a batch (a feature that is legitimately "
        "often empty says so here); None: validation.max_null_share",
    )
    drift: FeatureDriftThresholds | None = Field(
        default=None,
        description="this feature's drift thresholds, e.g. {psi: 0.3} (a noisy feature); None: the drift section's",
    )
    description: str = ""

    @model_validator(mode="after")
    def _check_domain(self) -> FeatureSpec:
        if self.dtype == "category" and not self.categories:
            raise ValueError(f"feature {self.name!r}: dtype 'category' needs a non-empty 'categories' list")
        if self.dtype != "category" and self.categories:
            raise ValueError(f"feature {self.name!r}: 'categories' is only valid with dtype 'category'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min ({self.min}) is greater than max ({self.max})")
        if self.drift is not None and self.drift.ks is not None and not self.is_numeric:
            raise ValueError(
                f"feature {self.name!r}: drift.ks is for numeric features; a {self.dtype} feature is judged by PSI only"
            )
        return self

    @property
    def is_numeric(self) -> bool:
        return self.dtype in ("int64", "float64")


class DataSource(StrictSection):
    kind: Literal["synthetic", "files"] = "synthetic"
    path: str | None = None

    @model_validator(mode="after")
    def _path_for_files(self) -> DataSource:
        if self.kind == "files" and not self.path:
            raise ValueError("source.kind 'files' needs source.path (a folder, file or s3:// prefix)")
        return self


class DirectionalCheck(StrictSection):
    """Adding `delta` to numeric `feature` must move the mean output in `direction` (within `tolerance`): the
    mean score (binary), the mean prediction (regression) or the mean probability of `target_class` (multiclass)."""

    feature: str
    delta: float
    direction: Literal["increase", "decrease"] = "increase"
    tolerance: float = Field(default=0.0, ge=0)
    target_class: str | None = Field(
        default=None,
        description="multiclass only, and required there: the class whose mean probability must move (a shift "
        "cannot raise every class's probability, so a check without one is refused at load)",
    )


class SensitiveAttribute(StrictSection):
    """A feature the model card reports fairness by: its categories, or numeric bins (edges, right-closed)."""

    feature: str
    bins: list[float] | None = Field(default=None, min_length=2, description="numeric features: bin edges")


class ModelCardText(StrictSection):
    """What every model card of this dataset's models says about them (the card's mechanics: `card` in
    configs/stages.py)."""

    purpose: str = Field(default="", description="what the model is for and what it must not be used for")
    owner: str = Field(default="", description="the team or person answerable for it")
    known_limitations: list[str] = Field(
        default_factory=list, description="stated on every card, with the ones the evaluation finds itself"
    )
    sensitive_attributes: list[SensitiveAttribute] = Field(
        default_factory=list,
        description="fairness by group (fairlearn): group metrics; demographic parity and equalized odds "
        "differences for binary tasks",
    )


KeyType = Literal["int64", "string"]


class DatasetConfig(StrictSection):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    entity_columns: list[str] = Field(
        min_length=1,
        description="the entity key: one column (written `entity_column: customer_id`) or a composite key of "
        "several (`entity_columns: [store_id, sku]`); each is a Feast entity of the feature view",
    )
    entity_dtype: KeyType | dict[str, KeyType] = Field(
        default="int64",
        description="type of the key column(s): int64, or string for ids such as C000123; a composite key may give "
        "each column its own ({store_id: int64, sku: string})",
    )
    timestamp_column: str
    label_column: str
    task: Literal["binary", "multiclass", "regression"] = Field(
        default="binary",
        description="what the label is: binary (bool, 0/1, or two named classes with positive_class), multiclass "
        "(class names or integers, kept as text) or regression (numbers); conveyor/domain/task_types.py",
    )
    positive_class: str | None = Field(
        default=None, description="binary with named classes (e.g. churned / stayed): the class that is 1"
    )
    classes: list[str] | None = Field(
        default=None,
        min_length=2,
        description="multiclass: the classes the label may take (the raw suite and training refuse any other, and "
        "every one needs training rows); None: the classes seen in the training data. A version records them in "
        "its model's column order (sorted, as scikit-learn's classes_), which its probability columns follow",
    )
    timezone: str = Field(
        default="UTC",
        description="time zone of timestamps that carry none (naive parquet timestamps, text without an offset), "
        "an IANA name such as Europe/Paris; every timestamp is stored in UTC",
    )
    source: DataSource = DataSource()
    features: list[FeatureSpec] = Field(min_length=1)
    # The choices that name this dataset's features live here, beside them (each name checked at load).
    slices: list[str] = Field(
        default_factory=list,
        description="categorical features whose slices the per-slice no-regression gate and the card judge",
    )
    invariant_features: list[str] = Field(
        default_factory=list,
        description="behavioural: permuting one of these features moves outputs by at most gates.max_invariance_shift",
    )
    directional: list[DirectionalCheck] = Field(
        default_factory=list, description="behavioural: a feature's shift must move the mean output this way"
    )
    model_card: ModelCardText = ModelCardText()

    @model_validator(mode="before")
    @classmethod
    def _one_key_spelling(cls, data: Any) -> Any:
        # `entity_column: x` is the one-column spelling of `entity_columns: [x]`; the model holds the list.
        if isinstance(data, dict) and "entity_column" in data:
            if "entity_columns" in data:
                raise ValueError("set entity_column (one key column) or entity_columns (a composite key), not both")
            data = {**data, "entity_columns": [data["entity_column"]]}
            del data["entity_column"]
        elif isinstance(data, dict) and "entity_columns" not in data:
            raise ValueError("entity_column: Field required (or entity_columns: [...] for a composite key)")
        return data

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetConfig:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a time zone name (e.g. UTC, Europe/Paris)") from None
        if self.positive_class is not None and self.task != "binary":
            raise ValueError(f"positive_class is for task binary, not {self.task}")
        if self.classes is not None and (self.task != "multiclass" or len(set(self.classes)) != len(self.classes)):
            raise ValueError("classes: a list of distinct class names, for task multiclass only")
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"features listed more than once: {duplicated}")
        reserved = {*self.entity_columns, self.timestamp_column, self.label_column}
        if len(reserved) != len(self.entity_columns) + 2:
            raise ValueError("the key column(s), timestamp_column and label_column must all be different columns")
        if isinstance(self.entity_dtype, dict) and set(self.entity_dtype) != set(self.entity_columns):
            raise ValueError(
                f"entity_dtype names {sorted(self.entity_dtype)}: give a type for exactly the key columns "
                f"{self.entity_columns} (or one type for all)"
            )
        clash = sorted(reserved.intersection(names))
        if clash:
            raise ValueError(f"{clash} cannot be both a key/label column and a feature")
        problems = [*self._unknown_features(set(names)), *self._directional_problems()]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _unknown_features(self, known: set[str]) -> list[str]:
        # A gate or card entry naming a feature the dataset does not have would be skipped silently.
        references = [
            *((f"slices[{i}]", name) for i, name in enumerate(self.slices)),
            *((f"invariant_features[{i}]", name) for i, name in enumerate(self.invariant_features)),
            *((f"directional[{i}].feature", c.feature) for i, c in enumerate(self.directional)),
            *(
                (f"model_card.sensitive_attributes[{i}].feature", a.feature)
                for i, a in enumerate(self.model_card.sensitive_attributes)
            ),
        ]
        return [
            f"{key}: {name!r} is not a feature of dataset {self.name!r} (features: {sorted(known)})"
            for key, name in references
            if name not in known
        ]

    def _directional_problems(self) -> list[str]:
        # A directional check on a multiclass model must say which class's probability moves.
        problems = []
        for i, check in enumerate(self.directional):
            key = f"directional[{i}] ({check.feature})"
            if self.task == "multiclass" and check.target_class is None:
                problems.append(f"{key}: task multiclass needs target_class (the class whose probability moves)")
            elif self.task != "multiclass" and check.target_class is not None:
                problems.append(f"{key}: target_class is for task multiclass, not {self.task}")
            elif self.classes and check.target_class is not None and check.target_class not in self.classes:
                problems.append(
                    f"{key}: target_class {check.target_class!r} is not one of dataset.classes {self.classes}"
                )
        return problems

    @property
    def key_dtypes(self) -> dict[str, KeyType]:
        """Each key column's type, in key order."""
        dtype = self.entity_dtype
        return {c: dtype[c] if isinstance(dtype, dict) else dtype for c in self.entity_columns}

    @property
    def key_arrow_types(self) -> dict[str, pa.DataType]:
        return {c: pa.int64() if t == "int64" else pa.string() for c, t in self.key_dtypes.items()}

    @property
    def integer_keys(self) -> list[str]:
        return [c for c, t in self.key_dtypes.items() if t == "int64"]

    @property
    def string_keys(self) -> list[str]:
        return [c for c, t in self.key_dtypes.items() if t == "string"]

    @property
    def composite_key(self) -> bool:
        return len(self.entity_columns) > 1

    @property
    def entity_column(self) -> str:
        """The key column of a one-column key; a composite key raises, naming the key (for paths that take one)."""
        if self.composite_key:
            raise CompositeKeyUnsupported(
                f"dataset {self.name!r} has a composite key {self.entity_columns}: this path takes a one-column key"
            )
        return self.entity_columns[0]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.is_numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.dtype in ("category", "bool")]

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(f"no feature named {name!r} in dataset {self.name!r}")
