"""Entry point for ``python -m imdb_sentiment`` and ``accelerate launch -m imdb_sentiment``."""

from imdb_sentiment.cli.app import main

if __name__ == "__main__":
    main()
