"""workbench: run, and see, the whole LLM training pipeline on small models.

Headless core. The Textual app lives in `app/`; nothing in this package imports textual.
"""

__version__ = "0.1.0"
