"""Hyper-parameter sweeps: Optuna proposes trials, each trial is an ordinary job, a leased driver steers them."""
