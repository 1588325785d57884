"""The registration verdict as pure functions: each rule of :func:`decide` and the ranking of candidates,
on hand-made candidates (no NeRF, no rendering).
"""
import math

import numpy as np
import pytest

from inerf_ros.register import Candidate, RegisterConfig, Start, decide
from inerf_ros.register.verdict import geometry_vouches, rank

THRESHOLD = 25.0


def _config(**overrides):
    values = dict(images=["unused"], out="unused", min_inliers=12, geometric_support=100, geometric_margin_db=6.0,
                  min_gain_db=2.0)
    values.update(overrides)
    return RegisterConfig(**values)


def _candidate(psnr_db, flat_psnr_db=10.0, support=None, judged=1.0, label="view a.png"):
    return Candidate(label, np.eye(4), loss=0.01, mse=10.0 ** (-psnr_db / 10.0),
                     flat_mse=10.0 ** (-flat_psnr_db / 10.0), judged=judged, support=support)


def test_over_the_threshold_is_accepted_photometrically():
    decision = decide(_candidate(26.0, support=40), THRESHOLD, _config())
    assert decision.accepted and decision.accepted_by == "photometric"
    assert decision.reason == "PSNR 26.00 dB >= 25.00 dB, 40 feature matches agree"
    no_check = decide(_candidate(26.0), THRESHOLD, _config())
    assert no_check.reason.endswith(", too few feature matches for a geometric check"), no_check.reason


def test_under_the_threshold_is_rejected_unless_geometry_vouches():
    rejected = decide(_candidate(22.0, support=50), THRESHOLD, _config())
    assert not rejected.accepted and rejected.accepted_by == ""
    assert rejected.reason.startswith("PSNR 22.00 dB < threshold 25.00 dB (50 feature matches agree; 100 and "
                                      "PSNR >= 19.00 dB would accept it on geometry"), rejected.reason
    on_geometry = decide(_candidate(22.0, support=100), THRESHOLD, _config())
    assert on_geometry.accepted and on_geometry.accepted_by == "geometry"
    assert on_geometry.reason.startswith("on geometry: 100 feature matches agree"), on_geometry.reason
    under_the_floor = decide(_candidate(18.9, support=500), THRESHOLD, _config())
    assert not under_the_floor.accepted
    photometric_only = decide(_candidate(22.0, support=500), THRESHOLD, _config(geometric_support=0))
    assert not photometric_only.accepted and "would accept it on geometry" not in photometric_only.reason


def test_a_rejection_names_a_better_supported_pose():
    best = _candidate(22.0, support=50)
    other = _candidate(20.0, support=80, label="pnp b.png (PnP pose)")
    reason = decide(best, THRESHOLD, _config(), most_supported=other).reason
    assert "; the best-supported pose, from pnp b.png (PnP pose), has 80 at 20.00 dB)" in reason, reason
    assert "best-supported" not in decide(best, THRESHOLD, _config(), most_supported=best).reason


def test_a_render_no_better_than_the_flat_colour_is_rejected():
    decision = decide(_candidate(26.0, flat_psnr_db=24.5, support=40), THRESHOLD, _config())
    assert not decision.accepted
    assert decision.reason == "render explains the photo no better than its mean colour (26.00 vs 24.50 dB)"


def test_too_few_agreeing_matches_reject_a_passing_psnr():
    decision = decide(_candidate(30.0, support=11), THRESHOLD, _config(min_inliers=12))
    assert not decision.accepted and "only 11 feature matches agree with the pose (< 12)" in decision.reason


def test_foreground_share_gate():
    config = _config(verdict_pixels="foreground", min_foreground=0.05)
    small = decide(_candidate(30.0, judged=0.04), THRESHOLD, config)
    assert not small.accepted and small.reason.startswith("the NeRF's surfaces cover 4.0 % of the photo")
    enough = decide(_candidate(30.0, judged=0.5, support=20), THRESHOLD, config)
    assert enough.accepted and "on the NeRF's surfaces (50 % of the photo)" in enough.reason, enough.reason


def test_ambiguity_rejects_only_with_a_limit_and_only_an_accepted_photo():
    best = _candidate(26.0, support=40)
    assert decide(best, THRESHOLD, _config(), ambiguity=(12.0, 0.1)).accepted  # 0: report only
    pinned = decide(best, THRESHOLD, _config(max_ambiguity_deg=5.0), ambiguity=(12.0, 0.1))
    assert not pinned.accepted and pinned.accepted_by == ""
    assert pinned.reason.endswith("but poses 12.0 deg apart fit the matches about equally well (> 5 deg)")
    assert decide(best, THRESHOLD, _config(max_ambiguity_deg=15.0), ambiguity=(12.0, 0.1)).accepted


def test_pnp_notes_are_appended():
    reason = decide(_candidate(26.0), THRESHOLD, _config(), pnp_notes=("pnp a.png: 3 matches",)).reason
    assert reason.endswith("; no PnP start (pnp a.png: 3 matches)"), reason


def test_rank_prefers_over_threshold_then_geometry_then_lower_error():
    config = _config()
    over = _candidate(25.5)
    vouched = _candidate(21.0, support=100)
    plain = _candidate(24.9, support=10)
    ordered = sorted([plain, over, vouched], key=lambda c: rank(c, THRESHOLD, config), reverse=True)
    assert ordered == [over, vouched, plain]
    assert rank(_candidate(26.0), THRESHOLD, config) > rank(_candidate(25.5), THRESHOLD, config)
    assert geometry_vouches(19.0, 100, THRESHOLD, config) and not geometry_vouches(18.99, 100, THRESHOLD, config)
    assert not geometry_vouches(30.0, None, THRESHOLD, config)


def test_candidate_psnr_and_nan_raises():
    assert _candidate(20.0).psnr == pytest.approx(20.0)
    assert Candidate("x", np.eye(4), 0.0, 0.0, 1.0, 1.0, None).psnr == math.inf
    with pytest.raises(ValueError):
        _ = Candidate("x", np.eye(4), 0.0, math.nan, 1.0, 1.0, None).psnr


def test_start_kinds():
    assert not Start("view", "view a.png", np.eye(4)).is_pnp
    assert Start("pnp", "pnp joint.png", np.eye(4)).is_pnp and not Start("pnp", "pnp joint.png", np.eye(4)).is_pooled
    assert Start("joint", "pnp joint (2 views, 30 inliers)", np.eye(4)).is_pooled
    with pytest.raises(ValueError):
        Start("pnp joint", "pnp joint", np.eye(4))
