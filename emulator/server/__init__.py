"""`emulator serve`: SageMaker's training-job API, CloudWatch Logs, STS and IAM on one local
port, over the library's verbs (``emulator.api``)."""
