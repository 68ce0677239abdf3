"""One file per pane: data.py, train.py, monitor.py, runs.py (each with its .tcss beside it)."""
