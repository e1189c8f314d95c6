"""Data: loaders for each source (`sources`, the registry) and the prepared, split dataset (`dataset`)."""
