"""Real training programs used as objectives for hyperparameter experiments."""
