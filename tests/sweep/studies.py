"""Tiny study files for the runner's end-to-end tests (seconds per trial on digits)."""

from __future__ import annotations

from pathlib import Path

TINY = """
name: {name}
data: {{dataset: digits}}
defaults:
  model: {{latent_dim: 2, encoder: {{width: 16, depth: 1}}, decoder: {{width: 16, depth: 1}}}}
  train: {{epochs: {epochs}, batch_size: 256}}
  eval: {{iwae_samples: 2, iwae_points: 20, probe_labels: [50], latents_to_keep: 50}}
arms:
  elbo:
    fixed: {{objective.alpha: 0, objective.lambda: 1}}
    search:
      model.decoder.width: {{choice: [8, 16]}}
  infovae:
    fixed: {{objective.alpha: 1}}
    search:
      objective.lambda: {{log_uniform: {{low: 1, high: 100}}}}
      objective.kernel: {{choice: [rbf, imq]}}
{extra_arms}
search:
  sampler: random
  seed_policy: {seed_policy}
  trials_per_arm: {trials}
  max_concurrent: 2
  objectives: [{{metric: metric.mmd, direction: minimize}}]
confirm: {{top_k: 1, seeds: {seeds}}}
resources: {{cpu: 1, gpu: 0}}
"""

# An arm whose every trial diverges (Adam at lr 1e12): each is recorded as failed.
EXPLODING_ARM = """
  exploding:
    fixed: {objective.alpha: 0, objective.lambda: 1, train.lr: 1.0e12}
    search:
      model.decoder.width: {choice: [8, 16]}
"""


# An arm with no search space: each trial is the fixed configuration with its own seed.
UNSEARCHED_ARM = """
  plain:
    fixed: {objective.alpha: 0, objective.lambda: 1}
"""


def write_study(
    folder: Path,
    name: str,
    *,
    trials: int = 2,
    seeds: int = 2,
    epochs: int = 2,
    extra_arms: str = "",
    seed_policy: str = "fixed",
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        TINY.format(
            name=name,
            trials=trials,
            seeds=seeds,
            epochs=epochs,
            extra_arms=extra_arms,
            seed_policy=seed_policy,
        )
    )
    return path
