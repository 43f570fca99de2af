"""`python -m daemon` / the `webhookd` console script."""

from __future__ import annotations

import sys

from daemon.cli import main as cli_main


def main() -> None:
    sys.exit(cli_main())


if __name__ == "__main__":
    main()
