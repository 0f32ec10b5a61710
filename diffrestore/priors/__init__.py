"""Priors: anything that can answer E[x0 | x0 + sigma * eps] (see priors/base.py)."""
