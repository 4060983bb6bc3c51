"""Kefu bot."""
