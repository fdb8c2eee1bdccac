"""Shard workers, their result message, and the groups that run them in-process or on Ray."""
