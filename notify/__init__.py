"""Notifications: a repository's channels hear of its tests' events (Slack, signed webhooks)."""
