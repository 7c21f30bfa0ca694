"""A run on disk: its folder and lock, resume, results.json, checkpoints, names, provenance, and the planning of
multirun jobs (duplicates, progress)."""
