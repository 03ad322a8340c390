"""Deployment tooling: the ARM template generator and the function-zip packager."""
