"""Billing: receipts as proof of purchase, and the per-tenant hash-chained billing ledger."""
