"""``python -m agentnb``: the same command as ``agentnb``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
