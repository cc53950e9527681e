"""The imdb-sentiment command line: parse flags, resolve config, call one library function."""
