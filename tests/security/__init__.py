"""Attacks on the platform, each as a test: a learner inside a lab, another tenant, a local user."""
