"""GitHub client, rate-limit budget, webhooks, Beat-driven polling and backfill."""
