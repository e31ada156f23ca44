"""The drill installation (tests/drills) runs the services the API tests fuzz."""

from tests.drills.conftest import drill  # noqa: F401 - the fixture, shared
