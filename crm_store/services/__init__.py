"""Use cases of the CRM store: one method, one transaction, views out."""
