"""`python -m app [PATH...]`: the same as `workbench tui [PATH...]`."""

import sys

from app.cli import app

if __name__ == "__main__":
    app(["tui", *sys.argv[1:]], prog_name="python -m app")
