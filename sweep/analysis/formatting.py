"""How every output writes a study's numbers: one place for numbers, p-values, intervals and
table cells, so that the HTML report, the exports, the CLI's tables and ``compare`` print the
same value the same way.

- A number: 4 significant digits, scientific below 1e-3 and from 1e5 on (:func:`format_number`).
- A p-value: 3 significant digits, ``< 1e-6`` below that, ``n/a`` when undefined
  (:func:`format_p`).
- An interval: ``estimate [low, high]``; the estimate alone when the bounds are undefined
  (:func:`format_interval`).
- A cell: a plain Python value for machine formats (:func:`plain_value`: NaN and infinities as
  None, NumPy scalars unwrapped) and text for people (:func:`format_value`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

#: A table cell as machine formats (CSV, JSON) hold it.
Cell = str | int | float | bool | None

#: p-values below this are written as ``< 1e-6`` (more digits would claim a precision the tests
#: do not have at the sample sizes of a study).
SMALLEST_P = 1e-6


def _missing(x: object) -> bool:
    if x is None:
        return True
    try:
        return bool(isinstance(x, float | np.floating) and math.isnan(x))
    except TypeError:
        return False


def format_number(x: float | int | None, *, scientific: bool = True) -> str:
    """Compact number: 4 significant digits; with ``scientific``, ``1.234e-04`` form below
    1e-3 and from 1e5 on. ``n/a`` for None or NaN, ``inf`` / ``-inf`` for infinities."""
    if _missing(x):
        return "n/a"
    x = float(x)  # type: ignore[arg-type]
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if scientific and x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4g}"


def format_p(p: float | None) -> str:
    """A two-sided p-value: ``0.0342``-style (3 significant digits), ``< 1e-6``, or ``n/a``."""
    if _missing(p):
        return "n/a"
    return "< 1e-6" if p < SMALLEST_P else f"{p:.3g}"  # type: ignore[operator]


def p_phrase(p: float | None) -> str:
    """A p-value in a sentence: ``= 0.0342``, ``< 1e-6`` or ``= n/a``."""
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def format_interval(
    estimate: float | None,
    low: float | None,
    high: float | None,
    *,
    number: Callable[[float], str] = format_number,
    missing: str = "n/a",
    template: str = "{estimate} [{low}, {high}]",
) -> str:
    """``estimate [low, high]`` (``template`` places the three, e.g. with HTML between them);
    the estimate alone when a bound is undefined; ``missing`` when the estimate is."""
    if _missing(estimate):
        return missing
    shown = number(float(estimate))  # type: ignore[arg-type]
    if _missing(low) or _missing(high):
        return shown
    return template.format(
        estimate=shown,
        low=number(float(low)),  # type: ignore[arg-type]
        high=number(float(high)),  # type: ignore[arg-type]
    )


def fixed_decimals(mean: float) -> Callable[[float], str]:
    """A number format with decimals fixed by the size of ``mean`` (4 below 0.1, 3 below 10,
    else 2), so that a mean and its bounds line up in a column of grid summaries."""
    digits = 4 if abs(mean) < 0.1 else 3 if abs(mean) < 10 else 2
    return lambda x: f"{x:.{digits}f}"


def format_mean_interval(mean: float, low: float, high: float) -> str:
    """A grid summary's cell: ``1.234 [1.100, 1.368]`` with :func:`fixed_decimals`; ``-`` when
    the mean is undefined."""
    if _missing(mean):
        return "-"
    return format_interval(mean, low, high, number=fixed_decimals(mean), missing="-")


def goal_rule(goal: str, difference: str = "differences") -> str:
    """What "better" means for a metric's goal (``min``, ``max`` or ``zero``), naming what the
    ``difference`` between arms is called where it is shown."""
    if goal == "zero":
        return f"nearer 0 is better; {difference} and tests on |x|"
    return "lower is better" if goal == "min" else "higher is better"


def format_percent(fraction: float) -> str:
    """A fraction as a percentage with 2 significant digits: ``0.0012`` -> ``0.12%``."""
    return f"{100 * fraction:.2g}%"


def plain_value(value: object) -> Cell:
    """A cell as a plain Python value: NumPy scalars unwrapped, None / NaN / infinities as None,
    anything else that is not a string, bool or number as its text."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if pd.api.types.is_scalar(value) and pd.isna(value):  # pandas' NA and NaT
        return None
    return str(value)


def format_value(value: object, *, missing: str = "n/a", scientific: bool = True) -> str:
    """A cell for people: numbers by :func:`format_number`, booleans as yes / no, ``missing``
    for None or NaN."""
    value = plain_value(value)
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_number(value, scientific=scientific)
    return str(value)
