"""Shared fixtures: the sandbox stand-ins (real HTTP, real TLS, real Azurite) live in tests/fixtures/."""

pytest_plugins = ["tests.fixtures.nordpass", "tests.fixtures.azure", "tests.harness"]
