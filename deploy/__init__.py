"""Build, release and deploy tooling: templates, the function package, release assets."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end with one actionable line and exit code 2, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see --help)\n")
