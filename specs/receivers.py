"""Reactions of the planning domain to signals sent by the lower apps.

The ticket_completed receiver (spec completion and the pull request step) lands with the
execution work; it must only enqueue a task by id.
"""
