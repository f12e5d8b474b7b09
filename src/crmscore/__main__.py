"""``python -m crmscore`` entry point."""

from crmscore.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
