"""scoreboard: scores, evidence bundles, signed verdicts, failed events, audit."""
