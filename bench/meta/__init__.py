"""Meta-evaluation: which metric to believe. Pure estimators on per-image scores
(:mod:`.consistency`: MetaQuantus's four tests; :mod:`.reliability`: Tomsett et al.'s
reliability measures; :mod:`.stability`: rank stability under a metric's own knobs) and the
perturbations of models and inputs they are computed on (:mod:`.perturb`)."""
