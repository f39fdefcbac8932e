"""Switchboard bench: load through the real system (SPEC.md §12). Run ``python -m bench``."""
