"""Adapters to the CI platforms: webhooks in, logs and test results in, actions out."""
