"""Kefu nlu."""
