"""Flakiness scoring and classification, flaky-test and quarantine records, check runs."""
