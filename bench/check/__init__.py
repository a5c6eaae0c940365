"""Contract checks: what a method may not do to a model (run time) and the contract tests of
`xaibench check` on tiny models."""
