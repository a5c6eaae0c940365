"""An example xaibench plugin distribution: one explainer, registered by entry point."""
