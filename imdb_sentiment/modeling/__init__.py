"""Models and tokenizers: loading, aliases, inference settings, and how a review becomes ids."""
