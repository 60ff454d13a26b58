"""Checks on data and models: pandera schemas, numerai-tools scoring and reports, era-wise splits with
embargo, and the replica of Numerai's model-upload runtime. Imports `model`, never `training`."""
