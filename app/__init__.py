"""The Textual workbench: a thin client over the headless core in `workbench/`.

    workbench tui                      # Data pane on sample_data/chat.jsonl, Train, Monitor, Runs
    workbench tui runs/sft             # a run directory opens the Monitor on it
    workbench tui a/ b/                # several run dirs: their curves overlaid
    workbench tui data.jsonl           # a data file opens the Data pane on it
    python -m app ...                  # the same

`app/` imports `workbench/`; `workbench/` never imports textual or `app/` (tests enforce it).
"""
