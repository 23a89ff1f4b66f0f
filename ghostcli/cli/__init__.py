"""The Typer command-line interface. Modules here import nothing heavy at import time."""
