"""Grading: run a template's success-criteria checks inside the lab and judge the results."""
