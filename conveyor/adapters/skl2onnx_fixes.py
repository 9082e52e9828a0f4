"""A fix for skl2onnx's tree converters with onnx >= 1.19: installed by the ONNX twin's export, once per process.

`skl2onnx.common.tree_ensemble.add_tree_to_attribute_pairs_hist_gradient_boosting` passes Python's `False` as
`nodes_missing_value_tracks_true` for leaves, and onnx's `make_attribute` now refuses booleans in an `ints`
attribute ("Expected an int, got a boolean"): every HistGradientBoosting conversion fails. The wrapper hands
`add_node` the same value as an int, which is what the ONNX attribute holds anyway (skl2onnx's own default is 0).

Checked against skl2onnx 1.20.0 with onnx 1.23.2. If a later skl2onnx renames `add_node` or drops the parameter,
nothing is patched and a warning says so (the conversion then fails as it does without this module, and the
twin is recorded failed). tests/unit/test_onnx_twin.py fails when the function changes.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

_MARK = "_conveyor_int_missing_tracks"
_PARAMETER = "nodes_missing_value_tracks_true"


def int_missing_tracks(stock: Callable[..., Any]) -> Callable[..., Any]:
    """`stock` (skl2onnx's `add_node`) with `nodes_missing_value_tracks_true` passed as an int."""

    @functools.wraps(stock)
    def add_node(*args: Any, **kwargs: Any) -> Any:
        if _PARAMETER in kwargs:
            kwargs[_PARAMETER] = int(kwargs[_PARAMETER])
        return stock(*args, **kwargs)

    setattr(add_node, _MARK, True)
    return add_node


def install() -> bool:
    """Patch `skl2onnx.common.tree_ensemble.add_node` once per process; False (with a warning) when it does not fit."""
    from skl2onnx.common import tree_ensemble

    stock = getattr(tree_ensemble, "add_node", None)
    if stock is not None and getattr(stock, _MARK, False):
        return True
    if stock is None or _PARAMETER not in inspect.signature(stock).parameters:
        warnings.warn(
            f"skl2onnx.common.tree_ensemble.add_node({_PARAMETER}=...) not found: conveyor/adapters/"
            "skl2onnx_fixes.py does not apply to this skl2onnx version",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    tree_ensemble.add_node = int_missing_tracks(stock)
    return True
