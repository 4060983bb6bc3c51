"""Kefu knowledge_base."""
