"""Notifications: a webhook and a Slack-compatible endpoint told what a rollout did."""
