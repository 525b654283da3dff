"""Errors meant for people: the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Something the user can fix (bad file, bad address, bad option), phrased for them."""
