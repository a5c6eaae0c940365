"""The report's figure kinds: the one list that ``xaibench plot KIND`` offers and
:data:`xaibench.report.render.PLOTS` draws (a test keeps the two equal). No heavy import here:
the command line reads it for ``--help``."""

KINDS: dict[str, str] = {
    "curves": "the mean curve per method with its 95% band, for every curve the metrics wrote",
    "aopc-steps": "AOPC against the number of MoRF steps (metrics that declare it: aopc)",
    "aopc-grid": "AOPC over patch sizes and substrates (two or more AOPC metrics that differ)",
    "gallery": "test images of every class with each method's map, one figure per model",
    "bars": "per-method bars with confidence intervals (metrics that declare it: pompom)",
    "agreement": "Kendall tau between the rankings each pair of metrics induces",
    "cost": "seconds per image to explain against the mean rank",
    "tradeoff": "activation against class re-identification (recomputed from the run's cache)",
}
