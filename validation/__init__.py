"""Checks on data and models. Imports `model`, never `training`.

- `validation.schemas`: pandera schemas of Numerai's frames (train/validation, live, benchmark, predictions);
- `validation.evaluation`: model evaluation: numerai-tools scoring and scikit-learn scorers (`scoring`), era-wise
  splits with an embargo (`splits`), the training report (`report`);
- `validation.runtime`: the replica of Numerai's model-upload runtime: the pins per Python (`pins/py3.X.txt`), the
  replica's virtual environment and its watch (`replica`), the standalone runner (`runner`);
- `validation.errors` (the errors a user can act on) and `validation.artifacts` (atomic writes, the manifest).
"""
