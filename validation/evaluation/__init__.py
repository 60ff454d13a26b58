"""Model evaluation: per-era scores with numerai-tools and scikit-learn scorers (`scoring`), era-wise splits with
an embargo and the scikit-learn splitter (`splits`), the training report (`report`)."""
