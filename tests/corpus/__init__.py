"""Bad-input corpus for fusemix (generated at test time by make_corpus.py)."""
