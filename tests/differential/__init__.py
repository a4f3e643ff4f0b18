"""Differential tests of matrixd's room core (auth rules, state resolution) against Synapse."""
