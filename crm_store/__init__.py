"""Kefu crm_store."""
