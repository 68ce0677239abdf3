"""The whole chain in one command: a recipe (recipe.py), the runner (runner.py), the report card
(report.py) and its curves (plots.py). `workbench pipeline` (cli_pipeline.py) drives it."""
