"""Kefu kefu."""
