"""Reusable widgets: token view, example list, charts, config form, confirm dialog."""
