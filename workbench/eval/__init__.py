"""Evaluation of checkpoints: metrics on replies (metrics.py), `evaluate_checkpoint` (evaluate.py),
next-token probes (probe.py) and Chinchilla arithmetic (chinchilla.py)."""
