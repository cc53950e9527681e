"""Watching a trained model's inputs: a reference profile of the reviews it was validated on,
and drift tests comparing a new batch of texts with it (``imdb-sentiment drift``).

It sits beside ``evaluation`` and ``export``: it reads reviews with the model's tokenizer and
scores them through :class:`~imdb_sentiment.inference.predictor.Predictor`.
"""
