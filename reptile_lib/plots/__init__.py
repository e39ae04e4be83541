"""Figures and tables drawn from results files (no training here)."""
