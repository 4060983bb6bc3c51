"""Kefu knowledge base: hybrid (dense + lexical) search over FAQ articles in English and Chinese."""
