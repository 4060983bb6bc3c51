"""Kefu console."""
