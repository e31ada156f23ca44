"""orchestrator: templates, policy gates, scenario lifecycle, sandbox runtime, grading."""
