"""`forge serve spawn|orchestrator|scoreboard`."""

from __future__ import annotations

import sys

import typer

from forge.config.settings import ConfigError
from forge.config.storage_root import UnsafeStorage
from forge.plans import PlanError
from forge.policy.decision import PolicyHashMismatch
from forge.services.common.listener import PortUnavailable
from forge.services.common.serving import ServiceName, StoreRefused
from forge.store.migrate import StoreUnavailable


def register(app: typer.Typer) -> None:
    """Add the `serve` command."""

    @app.command()
    def serve(
        service: ServiceName = typer.Argument(..., help="Which service to run."),
        host: str = typer.Option("127.0.0.1", help="Address to bind."),
        port: int | None = typer.Option(None, min=0, max=65535,
                                        help="Port (default 8082/8083/8086)."),
    ) -> None:
        """Run one Forge service until SIGINT/SIGTERM (graceful shutdown)."""
        from forge.services.common.serving import serve as run_service

        try:
            started = run_service(service, host, port)
        except (ConfigError, PlanError, PolicyHashMismatch, PortUnavailable,
                StoreUnavailable) as exc:
            # An operator error with its own clear message (both hashes for a policy pin).
            print(f"forge serve {service.value}: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        except StoreRefused as exc:  # the state store's schema (forge.store.migrate)
            print(f"forge serve {service.value}: not started, {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        except UnsafeStorage as exc:  # refused before a secret or key of it was read
            print(f"forge serve {service.value}: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        if not started:
            print(f"forge serve {service.value}: failed to start; see the log above",
                  file=sys.stderr)
            raise typer.Exit(3)
