"""Learned, calibrated match confidence: P(this candidate click was made by the converting person).

The candidate pairs fall in two regions that need different evidence:

* **Linked pairs** share a strong signal (cookie, session, user_id, email), a resolved identity or a direct click
  id. Here direct-click labels are informative. A conversion carrying a direct click id that matches a known
  click is a *labelled conversion*: that click is certainly the converter's; its other candidates are positives
  when they belong to the direct click's resolved identity (``click_identity_id``; ``sig_identity`` as a proxy)
  and negatives otherwise. An L2-regularised, sign-constrained logistic regression over every signal and
  feature (direct click withheld; TF terms ``sig * log(popularity)`` and time-decay terms ``sig * log1p(gap
  hours)`` for fingerprint and IP) is fitted on the labelled pairs and calibrated (Platt, or interpolated
  isotonic) on held-out labelled conversions. On the direct pair the identity signal is masked down to its raw
  strong signals: there the identity link exists only because of the withheld direct click.
* **Weak-only pairs** share nothing but an IP, an IP + user agent or a fingerprint. Identity-based labels are
  blind here: the converter's own clicks from another browser jar (an in-app webview, then Safari) or another
  device are in another identity, so the labels call them negatives although many are the converter's. These
  pairs get a Fellegi-Sunter model (Splink's approach) fitted by EM on all weak-only pairs, labelled or not.
  Its comparisons are the time gap, the network (IP popularity level x IP + user agent x in-app switch x device
  family match: the term-frequency adjustment is the popularity level) and the fingerprint popularity level;
  pairs that share a weak signal *and* a resolved identity (known matches that look like cross-jar matches)
  anchor the m-probabilities. Bayes factors are kept monotone (non-increasing in gap and in popularity), and
  the longest gaps and most crowded IPs are at most neutral evidence.
  Unsupervised EM needs volume. With fewer than ``weak_min_pairs`` (20,000) weak-only pairs or
  ``weak_min_anchors`` anchors, or an implausible fit, the weak-only pairs get the priors (below) instead:
  odds falling with the popularity of the shared fingerprint or IP and with the gap, the fingerprint and the
  network multiplied as Bayes factors over a base odds (``scoring.weak_evidence``).
  The 20,000 is measured on generated worlds, by pair-probability ECE against the truth (against the priors of
  the time, ``prior * popularity ** -0.5`` with a 72 h half-life; not measured again since their odds form):
  - 10,000 people (4.6k-5.4k weak-only pairs; seeds 1, 2, 3): EM 0.089 / 0.071 / 0.093, priors 0.029 / 0.028 /
    0.042. Every weak-only pair shares a fingerprint or an IP, because that is how candidates are blocked, so
    the two comparisons are dependent. EM's classes followed "shares a fingerprint" against "shares an IP": on
    seed 2 every fingerprint-only pair scored 0.84 where 14 % were matches. In a small world many phone
    fingerprints have 4-20 cookies, under the candidate guard of 20, so most fingerprint-only pairs are
    strangers. In larger worlds those fingerprints have hundreds of cookies and are never joined on; the
    fingerprint-only pairs that remain share rare fingerprints and are matches.
  - 20,000 people (8.1k pairs; seed 4): EM 0.045, priors 0.034.
  - 100,000 people (35k / 37k pairs; seeds 1, 2): EM 0.025 / 0.021, priors 0.040 / 0.034, with an equal or
    better top candidate. The priors miss in-app -> main browser handoffs there: a pair sharing a fingerprint
    and an IP under another user agent is 99 % a match, and the priors give it 0.31. Last-touch recall was
    0.776 with EM against 0.711 with the priors (seed 1).
  ``ATTRIBUTION_WEAK_PAIR_MODEL=priors`` turns EM off in the pipeline.

Direct-click pairs are then combined by noisy-or with ``direct_confidence`` (0.995). With fewer labelled
conversions than ``min_labelled_conversions`` (or a single-class split) the model is the old fixed priors,
combined instead of maxed (strongest prior per family by noisy-or, fingerprint / IP priors in odds falling with
popularity and the gap), and ``MatchModel.source`` is ``'prior'``. It still carries the unseen-later-click
estimate when 50 or more labelled conversions allow it (``survival.SURVIVAL_MIN_CONVERSIONS``).

Weak evidence gets its recency: ``fingerprint_recency_rank`` / ``ip_recency_rank`` / ``ip_ua_recency_rank`` (the
click's rank, newest first, among the conversion's candidates sharing the value; the candidates keep the k most
recent clicks of every value however popular) enter the label model as ``sig * log(rank)`` terms. The priors keep
the popularity-based chance agreement: a popular value's most recent click is still often a stranger's (its odds
fall as 1 / popularity), a rare value's click minutes before the conversion is usually the converter's.

The labels are not representative: conversions with a direct click id are mostly same-browser ones.
``shift.label_shift`` measures how far they are from the rest (standardised mean difference per feature of each
conversion's best candidate, and the share of unlabelled conversions whose signal pattern the labels barely
show); the ``match_model`` asset reports it and warns when calibration rests on extrapolation.

The model is a small table (``model_to_frame``) fitted daily and read back hourly (``model_from_frame``).
Everything here is vectorised numpy; there is no I/O.
"""

from python_models.confidence.features import labelled_pairs, linked_pairs
from python_models.confidence.fit import fit_match_model, fit_window_start
from python_models.confidence.model import DEFAULT_PRIORS, SIGNALS, MatchModel, MatchModelConfig, WeakModel, prior_model
from python_models.confidence.persistence import SIGNAL_WEIGHT_COLUMNS, model_from_frame, model_to_frame, signal_weights
from python_models.confidence.scoring import score_candidates
from python_models.confidence.survival import (
    fit_unseen_later_click,
    no_unseen_later_click,
    stated_no_unseen_later_click,
)

__all__ = [
    "DEFAULT_PRIORS",
    "SIGNALS",
    "SIGNAL_WEIGHT_COLUMNS",
    "MatchModel",
    "MatchModelConfig",
    "WeakModel",
    "fit_match_model",
    "fit_unseen_later_click",
    "fit_window_start",
    "labelled_pairs",
    "linked_pairs",
    "model_from_frame",
    "model_to_frame",
    "no_unseen_later_click",
    "stated_no_unseen_later_click",
    "prior_model",
    "score_candidates",
    "signal_weights",
]
