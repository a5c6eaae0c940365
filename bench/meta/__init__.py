"""Meta-evaluation: which metric to believe. Pure estimators on per-image scores
(:mod:`xaibench.meta.consistency`: MetaQuantus's four tests; :mod:`xaibench.meta.reliability`:
Tomsett et al.'s reliability measures; :mod:`xaibench.meta.stability`: rank stability under a
metric's own knobs) and the perturbations of models and inputs they are computed on
(:mod:`xaibench.meta.perturb`)."""
