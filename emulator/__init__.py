"""Run SageMaker training jobs on the local Docker engine."""
