"""`forge policy …`: bundle hash, one-off decisions for operators, Rego unit tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from forge_verify.files import InputRefused, read_bounded_text

MAX_INPUT_BYTES = 1024 * 1024  # a policy input document is a few KiB

app = typer.Typer(help="Rego policy gates: hash, evaluate, test.", no_args_is_help=True)

_POLICIES = typer.Option(None, "--policies", help="Policy directory (default: FORGE_POLICY_DIR, "
                         "else the shipped forge/content/policies; `forge config check` "
                         "prints it).")


@app.command("hash")
def hash_(policies: Path | None = _POLICIES) -> None:
    """Print the policy bundle hash (what OPA_POLICY_HASH pins)."""
    from forge.policy import PolicyError, policy_hash

    try:
        typer.echo(policy_hash(policies))
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("eval")
def eval_(
    package: str = typer.Argument(..., help="Rego package, e.g. forge.training."),
    input_file: Path = typer.Argument(..., help="JSON file holding the input document."),
    policies: Path | None = _POLICIES,
    opa_url: str | None = typer.Option(None, "--opa-url", help="Ask this OPA (default OPA_URL; "
                                       "embedded engine when unset)."),
) -> None:
    """Evaluate one gate and print the decision as JSON; exit 0 allow, 1 deny, 2 error."""
    from forge.policy import PolicyError, PolicyUnavailable, make_policy_engine

    try:
        doc = json.loads(read_bounded_text(input_file, MAX_INPUT_BYTES, what="input JSON"))
    except InputRefused as exc:
        typer.echo(f"error: cannot read input JSON {input_file}: {exc.reason}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        typer.echo(f"error: cannot read input JSON {input_file}: {reason}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(doc, dict):
        typer.echo("error: the input document must be a JSON object", err=True)
        raise typer.Exit(2)
    try:
        engine = make_policy_engine(opa_url or os.environ.get("OPA_URL") or None, policies)
        decision = engine.decide(package, doc)
    except PolicyUnavailable as exc:
        typer.echo(f"error: policy engine unavailable (not a deny): {exc}", err=True)
        raise typer.Exit(2) from exc
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(decision.to_dict(), indent=2))
    raise typer.Exit(0 if decision.allow else 1)


@app.command("test")
def test(
    policies: Path | None = _POLICIES,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
) -> None:
    """Run the Rego unit tests (*_test.rego) through the embedded engine."""
    from forge.policy.rego_tests import main

    args = ["--json"] if as_json else []
    if policies is not None:
        args += ["--policies", str(policies)]
    raise typer.Exit(main(args))
