"""`python -m workbench ...` = the `workbench` command (what torchrun's `-m workbench` runs in each process)."""

from workbench.cli import main

if __name__ == "__main__":  # importing the module (as the headless test does) must not run the CLI
    main()
