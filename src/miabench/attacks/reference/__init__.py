"""Reference-model attacks as pure array functions: LiRA, RMIA and a dense (per-pixel) LiRA.

Every attack here reads cached per-sample statistics of a target model and of M reference
models, plus the samples × models membership matrix (True = the model trained on the sample),
and returns one score per sample, higher = more likely a member of the target's training set.
Nothing here touches a victim, a file or a random state except
:func:`~miabench.attacks.reference.evaluation.reference_subsets`.

Algorithms (read from the authors' code and papers, re-derived here):

- LiRA, Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022
  (tensorflow/privacy ``research/mi_lira_2021``). Online: per-sample Gaussians of the
  statistic under the reference models that trained on the sample (IN) and those that did not
  (OUT); the score is the log likelihood ratio of the target's statistic. Offline: OUT only, a
  one-sided test of the target's statistic against the OUT Gaussian.
- RMIA, Zarifzadeh, Liu & Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML
  2024 (privacytrustlab/ml_privacy_meter ``modules/mia/attacks/rmia.py``). The score of x is
  the fraction of population samples z that x dominates:
  ``(Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) ≥ γ``, with Pr(·) averaged over reference models.
- Dense LiRA (new here): per-(sample, pixel) IN/OUT Gaussians, per-pixel log likelihood
  ratios summed over the image under an independence assumption.

Which module holds what (import from the module; this package re-exports nothing):

- :mod:`~miabench.attacks.reference.lira`: ``lira_online``, ``lira_offline``, ``pixel_lira``,
  ``pixel_lira_offline``.
- :mod:`~miabench.attacks.reference.rmia`: ``rmia``, ``rmia_marginal``, ``tune_rmia_a``.
- :mod:`~miabench.attacks.reference.transforms`: statistics from losses and errors
  (``logit_from_loss``, ``log_error``, ``likelihood_from_loss``).
- :mod:`~miabench.attacks.reference.evaluation`: ``leave_one_out``, ``reference_subsets``.
- ``_inputs`` (shape, finiteness and membership checks, the balanced IN/OUT sides) and
  ``_gaussians`` (the per-sample IN/OUT Gaussian fits and their fallbacks) serve the attacks.

How each fallback, estimator and transform is chosen, and why, is in docs/reference_attacks.md.
"""
