"""After the runs: sweep aggregation (sweep.py), paired statistics, exports, W&B reads, and every plot."""
