"""IMDB data: tables of reviews, sources (hub, aclImdb, split folders), preparation and splits."""
