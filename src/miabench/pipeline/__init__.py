"""The stages behind the Hydra apps: train (cached) → attack → table."""
