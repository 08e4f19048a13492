"""Plotting functions (matplotlib) for cross-species analyses and scICE."""
