"""The user's side: data (numerapi download, synthetic world, lean loading), config, the training pipeline,
building the pickle, upload, and the `nmu` CLI."""
