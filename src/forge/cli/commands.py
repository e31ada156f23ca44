"""Registry of `forge` command groups.

Each group lives in its own module under forge.cli and exposes either `app` (a Typer
sub-app) or `register(app)` for top-level commands; this file only wires them in.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add every command group to the root app (imports are local to keep startup fast)."""
    from forge.cli import (
        apikey,
        artifacts,
        audit,
        completions,
        config_check,
        demo,
        entitlements,
        image,
        keys,
        lab,
        nats,
        nodes,
        policy,
        receipt,
        retention,
        runtime,
        scenarios,
        secrets,
        serve,
        template,
        up,
        verify,
    )

    serve.register(app)
    config_check.register(app)
    verify.register(app)
    up.register(app)
    demo.register(app)
    app.add_typer(secrets.app, name="secrets")
    app.add_typer(apikey.app, name="apikey")
    app.add_typer(entitlements.app, name="entitlements")
    app.add_typer(receipt.app, name="receipt")
    app.add_typer(template.app, name="template")
    app.add_typer(policy.app, name="policy")
    app.add_typer(keys.app, name="keys")
    app.add_typer(audit.app, name="audit")
    app.add_typer(nats.app, name="nats")
    app.add_typer(completions.app, name="completions")
    app.add_typer(retention.app, name="retention")
    app.add_typer(scenarios.app, name="scenarios")
    app.add_typer(nodes.app, name="nodes")
    app.add_typer(runtime.app, name="runtime")
    app.add_typer(artifacts.app, name="artifacts")
    app.add_typer(image.app, name="image")
    app.add_typer(lab.app, name="lab")
