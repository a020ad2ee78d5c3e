"""Arm roles, the verdict and the paper's claims on synthetic stores with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sweep.analysis.claims import (
    check_claims,
    classify_arm,
    expressive_decoder_claim,
    reference_arm,
)
from sweep.analysis.load import normalise_trials
from sweep.analysis.ranking import Objective
from sweep.analysis.verdict import build_verdict

# kl is the rate, the high end of an arm's mutual-information interval [mutual_info, kl].
GOOD = {"mmd": 0.01, "log_det_cov": -0.2, "mutual_info": 3.0, "kl": 3.6, "probe_acc_100": 0.85}
BAD = {"mmd": 0.05, "log_det_cov": -3.0, "mutual_info": 2.0, "kl": 2.4, "probe_acc_100": 0.70}
SD = {"mmd": 0.001, "log_det_cov": 0.05, "mutual_info": 0.05, "kl": 0.05, "probe_acc_100": 0.005,
      "mutual_info_cap": 0.0}


def _confirm(arm: str, alpha: float, lam: float, means: dict[str, float], n: int = 5,
             seed: int = 0, decoder: str = "mlp") -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        row: dict[str, object] = {
            "arm": arm, "phase": "confirm", "status": "completed", "trial_id": f"{arm}-{k}",
            "seed": k, "param.train.seed": k, "param.objective.alpha": alpha,
            "param.objective.lambda": lam, "param.model.decoder.kind": decoder,
        }
        for metric, mean in means.items():
            row[f"metric.{metric}"] = rng.normal(mean, SD[metric])
        rows.append(row)
    return rows


def _claims(rows: list[dict[str, object]], arms: list[str]):
    trials = normalise_trials(pd.DataFrame(rows))
    roles = [classify_arm(arm, {}, trials) for arm in arms]
    reference = reference_arm(roles, arms)
    verdict = build_verdict(trials, arms, Objective("mmd", "minimize"), reference)
    return verdict, check_claims(verdict, roles, trials)


def _by_metric(claims, word: str):
    return [c for c in claims if word in c.statement]


# --------------------------------------------------------------------------- roles


def test_arm_with_alpha_zero_and_lambda_one_in_its_trials_is_elbo_like() -> None:
    trials = normalise_trials(pd.DataFrame(_confirm("plain", 0.0, 1.0, GOOD)))
    assert classify_arm("plain", {}, trials).role == "elbo"


def test_arm_with_positive_divergence_weight_is_infovae_like() -> None:
    trials = normalise_trials(pd.DataFrame(_confirm("mmd", 0.5, 100.0, GOOD)))
    assert classify_arm("mmd", {}, trials).role == "infovae"


def test_beta_vae_arm_without_divergence_term_is_other() -> None:
    # beta-VAE: alpha = 1 - beta, lambda = beta -> alpha + lambda - 1 = 0.
    trials = normalise_trials(pd.DataFrame(_confirm("beta", 1 - 4.0, 4.0, GOOD)))
    assert classify_arm("beta", {}, trials).role == "other"


def test_role_comes_from_the_spec_when_there_are_no_trials() -> None:
    empty = normalise_trials(pd.DataFrame())
    spec_elbo = {"fixed": {"objective": {"alpha": 0, "lambda": 1}}}
    spec_info = {"fixed": {"objective.alpha": 0.0}, "search": {"objective.lambda": {}}}
    assert classify_arm("a", spec_elbo, empty).role == "elbo"
    assert classify_arm("b", spec_info, empty).role == "infovae"


def test_role_falls_back_to_the_arm_name() -> None:
    empty = normalise_trials(pd.DataFrame())
    assert classify_arm("ELBO-baseline", {}, empty).role == "elbo"
    assert classify_arm("infovae_mmd", {}, empty).role == "infovae"
    assert classify_arm("something", {}, empty).role == "other"


def test_reference_arm_is_the_first_elbo_like_arm() -> None:
    trials = normalise_trials(pd.DataFrame(
        _confirm("info", 0.0, 10.0, GOOD) + _confirm("elbo", 0.0, 1.0, BAD)
    ))
    roles = [classify_arm(a, {}, trials) for a in ("info", "elbo")]
    assert reference_arm(roles, ["info", "elbo"]) == "elbo"


# --------------------------------------------------------------------------- verdict + claims


def test_verdict_on_a_known_store_names_infovae_the_winner_of_every_claimed_metric() -> None:
    rows = _confirm("elbo", 0.0, 1.0, BAD, seed=1) + _confirm("info", 0.0, 100.0, GOOD, seed=2)
    verdict, _ = _claims(rows, ["elbo", "info"])
    winners = {row.metric.key: (row.winner, row.winner_significant) for row in verdict.rows}
    for key in ("mmd", "log_det_cov", "mutual_info", "probe_acc_100"):
        assert winners[key] == ("info", True), key
    assert verdict.reference == "elbo"


def test_every_pair_claim_holds_when_infovae_is_clearly_better() -> None:
    rows = _confirm("elbo", 0.0, 1.0, BAD, seed=1) + _confirm("info", 0.0, 100.0, GOOD, seed=2)
    _, claims = _claims(rows, ["elbo", "info"])
    pair = [c for c in claims if c.infovae_arm is not None]
    assert len(pair) == 4
    assert all(c.status == "holds" for c in pair), [c.numbers for c in pair]


def test_claims_carry_their_numbers() -> None:
    rows = _confirm("elbo", 0.0, 1.0, BAD, seed=1) + _confirm("info", 0.0, 100.0, GOOD, seed=2)
    _, claims = _claims(rows, ["elbo", "info"])
    mmd = _by_metric(claims, "lower MMD")[0]
    assert "Welch p" in mmd.numbers and "95% CI" in mmd.numbers and "n = 5, 5" in mmd.numbers
    assert all(c.numbers for c in claims)


def test_mmd_claim_does_not_hold_when_the_elbo_arm_is_lower() -> None:
    info = dict(GOOD, mmd=0.08)
    rows = _confirm("elbo", 0.0, 1.0, BAD, seed=1) + _confirm("info", 0.0, 100.0, info, seed=2)
    _, claims = _claims(rows, ["elbo", "info"])
    mmd = _by_metric(claims, "lower MMD")[0]
    assert mmd.status == "does not hold"
    assert "ELBO arm is lower" in mmd.numbers


def test_claim_does_not_hold_when_the_difference_is_not_significant() -> None:
    # Same distribution for both arms, large noise relative to the (zero) effect.
    rows = _confirm("elbo", 0.0, 1.0, GOOD, seed=1) + _confirm("info", 0.0, 100.0, GOOD, seed=2)
    _, claims = _claims(rows, ["elbo", "info"])
    mmd = _by_metric(claims, "lower MMD")[0]
    assert mmd.status == "does not hold"


def test_log_det_claim_compares_distance_from_zero() -> None:
    # InfoVAE at +0.3 is nearer 0 than the ELBO at -3, although it is not lower.
    info = dict(GOOD, log_det_cov=0.3)
    rows = _confirm("elbo", 0.0, 1.0, BAD, seed=1) + _confirm("info", 0.0, 100.0, info, seed=2)
    _, claims = _claims(rows, ["elbo", "info"])
    assert _by_metric(claims, "log det")[0].status == "holds"


def test_claims_are_not_measured_without_an_elbo_arm() -> None:
    rows = _confirm("info_a", 0.0, 10.0, GOOD) + _confirm("info_b", 0.0, 100.0, BAD)
    _, claims = _claims(rows, ["info_a", "info_b"])
    pair = [c for c in claims if "expressive" not in c.statement]
    assert all(c.status == "not measured" for c in pair)
    assert all("no ELBO-like arm" in c.numbers for c in pair)


def test_claims_are_not_measured_with_a_single_seed() -> None:
    rows = _confirm("elbo", 0.0, 1.0, BAD, n=1) + _confirm("info", 0.0, 100.0, GOOD, n=5)
    _, claims = _claims(rows, ["elbo", "info"])
    mmd = _by_metric(claims, "lower MMD")[0]
    assert mmd.status == "not measured"
    assert "at least 2" in mmd.numbers


def test_claims_are_checked_per_pair_with_several_infovae_arms() -> None:
    rows = (_confirm("elbo", 0.0, 1.0, BAD, seed=1) + _confirm("info_a", 0.0, 10.0, GOOD, seed=2)
            + _confirm("info_b", 0.0, 100.0, dict(GOOD, mmd=0.09), seed=3))
    _, claims = _claims(rows, ["elbo", "info_a", "info_b"])
    mmd = {c.infovae_arm: c.status for c in _by_metric(claims, "lower MMD")}
    assert mmd == {"info_a": "holds", "info_b": "does not hold"}


def test_missing_metric_is_not_measured() -> None:
    means = {k: v for k, v in GOOD.items() if k != "probe_acc_100"}
    bad = {k: v for k, v in BAD.items() if k != "probe_acc_100"}
    rows = _confirm("elbo", 0.0, 1.0, bad) + _confirm("info", 0.0, 100.0, means)
    _, claims = _claims(rows, ["elbo", "info"])
    probe = _by_metric(claims, "probe")[0]
    assert probe.status == "not measured"


# --------------------------------------------------------------------------- expressive decoder


def _decoder_rows(gaps: dict[str, float]) -> list[dict[str, object]]:
    rows = []
    for decoder, gap in gaps.items():
        rows += _confirm(f"elbo_{decoder}", 0.0, 1.0, {"mutual_info": 2.0}, decoder=decoder)
        rows += _confirm(f"info_{decoder}", 0.0, 50.0, {"mutual_info": 2.0 + gap},
                         decoder=decoder, seed=7)
    return rows


def _expressive(rows: list[dict[str, object]]):
    trials = normalise_trials(pd.DataFrame(rows))
    roles = [classify_arm(a, {}, trials) for a in trials["arm"].unique()]
    return expressive_decoder_claim(trials, roles)


def test_expressive_decoder_claim_holds_when_the_gap_grows_with_capacity() -> None:
    claim = _expressive(_decoder_rows({"mlp": 0.5, "pixelcnn": 1.5}))
    assert claim.status == "holds"
    assert claim.numbers.index("mlp") < claim.numbers.index("pixelcnn")


def test_expressive_decoder_claim_does_not_hold_when_the_gap_shrinks() -> None:
    claim = _expressive(_decoder_rows({"mlp": 1.5, "conv": 1.0, "pixelcnn": 0.2}))
    assert claim.status == "does not hold"


def _capped_decoder_rows(infovae_mi: dict[str, float], cap: float) -> list[dict[str, object]]:
    rows = []
    for decoder, mi in infovae_mi.items():
        rows += _confirm(f"elbo_{decoder}", 0.0, 1.0,
                         {"mutual_info": 0.5, "mutual_info_cap": cap}, decoder=decoder)
        rows += _confirm(f"info_{decoder}", 0.0, 50.0,
                         {"mutual_info": mi, "mutual_info_cap": cap}, decoder=decoder, seed=7)
    return rows


def test_expressive_decoder_claim_says_where_infovae_is_at_the_estimators_cap() -> None:
    claim = _expressive(_capped_decoder_rows({"mlp": 5.0, "pixelcnn": 7.6}, cap=7.601))
    assert claim.numbers.endswith(
        "InfoVAE's estimate is at the estimator's cap (log N = 7.601) at 1 of 2 levels: "
        "there its MI, and the gap, can be larger than shown")


def test_expressive_decoder_claim_has_no_cap_note_below_the_cap() -> None:
    claim = _expressive(_capped_decoder_rows({"mlp": 5.0, "pixelcnn": 7.0}, cap=7.601))
    assert claim.status == "holds"
    assert "cap" not in claim.numbers


def test_expressive_decoder_claim_is_not_measured_with_one_decoder() -> None:
    claim = _expressive(_decoder_rows({"mlp": 1.0}))
    assert claim.status == "not measured"
    assert "two decoder levels" in claim.numbers


def test_no_confirm_results_leave_pair_claims_not_measured() -> None:
    trials = normalise_trials(pd.DataFrame(_confirm("elbo", 0.0, 1.0, BAD)).assign(
        phase="search"))
    roles = [classify_arm("elbo", {}, trials), classify_arm("info", {}, trials)]
    claims = check_claims(None, roles, trials)
    assert claims
    assert all(c.status == "not measured" for c in claims)


@pytest.mark.parametrize("status", ["failed", "stopped"])
def test_arm_whose_trials_all_failed_is_not_measured(status: str) -> None:
    failed = [dict(r, status=status, **{f"metric.{k}": math.nan for k in GOOD})
              for r in _confirm("info", 0.0, 100.0, GOOD)]
    rows = _confirm("elbo", 0.0, 1.0, BAD) + failed
    _, claims = _claims(rows, ["elbo", "info"])
    assert all(c.status == "not measured" for c in _by_metric(claims, "lower MMD"))


def _mutual_info(info: dict[str, float], elbo: dict[str, float]):
    rows = _confirm("elbo", 0.0, 1.0, elbo, seed=1) + _confirm("info", 1.0, 10.0, info, seed=2)
    _, claims = _claims(rows, ["elbo", "info"])
    (claim,) = [c for c in claims if c.claim_id == "mutual_info"]
    return claim


def test_mutual_information_holds_when_infovaes_estimate_is_above_the_elbos_rate() -> None:
    claim = _mutual_info(GOOD, BAD)  # InfoVAE's estimate 3.0 > the ELBO's rate 2.4
    assert claim.status == "holds"
    assert "rate" in claim.numbers and "estimate" in claim.numbers


def test_mutual_information_is_not_measurable_when_the_intervals_overlap() -> None:
    # The ELBO's estimate (2.0) is below InfoVAE's (3.0), but its rate (3.5) is above it: the
    # ELBO's true MI may be anywhere up to 3.5, so the estimator cannot order the arms.
    claim = _mutual_info(GOOD, dict(BAD, kl=3.5))
    assert claim.status == "not measurable"


def test_mutual_information_does_not_hold_in_the_mirror_case() -> None:
    claim = _mutual_info(dict(GOOD, mutual_info=1.0, kl=1.5), BAD)  # ELBO estimate 2.0 > 1.5
    assert claim.status == "does not hold"


def test_mutual_information_is_not_measured_without_the_rate() -> None:
    no_rate = {k: v for k, v in GOOD.items() if k != "kl"}
    claim = _mutual_info(no_rate, {k: v for k, v in BAD.items() if k != "kl"})
    assert claim.status == "not measured"


def test_every_claim_a_study_may_name_is_defined_once_with_its_rule() -> None:
    from sweep.analysis.claims import PAPER_CLAIMS
    from sweep.names import CLAIM_IDS

    assert tuple(c.id for c in PAPER_CLAIMS) == CLAIM_IDS
    assert all(c.statement and c.rule for c in PAPER_CLAIMS)
