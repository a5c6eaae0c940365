"""Running a config: plan (cells and keys), execute (compute what is not cached), write (the run
folder's tables and manifest); the process group under torchrun; replaying a run's cache."""
