"""Syarah Chat: a real-time chat backend over Socket.IO, hosted by Tornado."""

__version__ = "0.1.0"
