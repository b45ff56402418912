"""``pipeline hash-password``: an argon2 hash for ``relay.users[].password_hash`` (and console users)."""

from __future__ import annotations

import click


@click.command("hash-password")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def hash_password(password: str) -> None:
    """Print an argon2 hash for relay.users[].password_hash."""
    from ..intake.auth import hash_password as make_hash

    click.echo(make_hash(password))
