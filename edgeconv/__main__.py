"""``python -m edgeconv``: the same command line as the ``edgeconv`` console script."""

from edgeconv.cli import main

if __name__ == "__main__":
    main()
