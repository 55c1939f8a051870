"""Shared machinery of every category: errors, secrets, lifecycle, dispatch, retry.

Nothing here imports a third-party package.
"""
