"""The report: report.md and every figure, drawn from the files of a run folder alone."""
