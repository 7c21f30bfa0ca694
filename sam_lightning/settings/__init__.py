"""What a run is set to do: typed settings and the one user-error type, strict key checks, the fingerprint of a run,
the criterion, and the settings resolved from the machine (threads, precision and compile, W&B mode)."""
