"""A study's own data file (``data.dataset: array``) checked before anything runs.

Loading a spec never reads the file (``report``, ``show`` and ``resume`` read a study's
``study.yaml`` wherever its data now is); ``infovae-sweep validate`` calls
:func:`data_file_issues`, and ``run`` refuses the same file when the runner loads it. The
file is read with NumPy alone (:mod:`infovae_core.datafiles`), so validating stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweep.spec.study_spec import StudySpec

__all__ = ["data_file_issues"]


def _train_sizes(spec: StudySpec, arm: str) -> list[int]:
    """Every ``data.train_size`` an arm may train with: its fixed value or its searched range's
    extremes, else the ``data:`` block's."""
    settings = spec.arm_settings(arm)
    searched = spec.arms[arm].search.get("data.train_size")
    values = searched.extremes() if searched is not None else [settings.get("data.train_size")]
    return [int(v) for v in values if v is not None]


def data_file_issues(spec: StudySpec) -> list[str]:
    """What is wrong with the study's ``data.path`` file, one line each naming the file: the
    file itself (:func:`infovae_core.datafiles.read_image_arrays`), a seeded split leaving a
    split under two images, a ``data.train_size`` beyond the file's training split, and a
    ``metric.probe_acc_<n>`` objective on a file without labels. Empty for the other datasets
    (their files are found, downloaded and checked when a run loads them)."""
    if spec.data.dataset != "array" or not spec.data.path:
        return []
    from infovae_core.datafiles import ArrayFileError, check_split, read_image_arrays

    try:
        arrays = read_image_arrays(spec.data.path)
        sizes = check_split(arrays, spec.data.val_fraction, spec.data.test_fraction)
    except ArrayFileError as error:
        return [str(error)]
    issues: list[str] = []
    for arm in spec.arm_names:
        too_many = [n for n in _train_sizes(spec, arm) if n > sizes["train"]]
        if too_many:
            issues.append(
                f"{arrays.path}: data.train_size {max(too_many)} (arm {arm}) is more than the "
                f"{sizes['train']} images of the file's training split"
            )
    if arrays.labels is None:
        for i, objective in enumerate(spec.search.objectives):
            if objective.probe_labels is not None:
                issues.append(
                    f"{arrays.path}: has no labels, so {objective.metric} "
                    f"(search.objectives.{i}) is never computed; add labels to the file or "
                    "choose another objective"
                )
    return issues
