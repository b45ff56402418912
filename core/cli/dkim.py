"""``pipeline dkim keygen DOMAIN SELECTOR``: a new DKIM private key (mode 0600) and the DNS record to publish.

The key is made by the installed ``dkim`` plugin (found through the plugin registry, like any
plugin), so the command and the signer agree on key formats and records. Nothing is changed in
the configuration; the command prints the ``keys:`` entry to add.
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import json_option
from .output import echo_json


@click.group()
def dkim() -> None:
    """DKIM keys for the dkim plugin."""


@dkim.command("keygen")
@click.argument("domain")
@click.argument("selector")
@click.option("--algorithm", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True,
              help="rsa: rsa-sha256 (every receiver); ed25519: ed25519-sha256 (RFC 8463; sign with both)")
@click.option("--bits", type=int, default=2048, show_default=True, help="RSA key size (2048 or more)")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="private key file (default: DOMAIN.SELECTOR.key in the current folder); never replaced")
@json_option
@click.pass_context
def keygen(ctx: click.Context, domain: str, selector: str, algorithm: str, bits: int, output: Path | None,
           as_json: bool) -> None:
    """Write a new private key for DOMAIN and SELECTOR (mode 0600) and print its DNS TXT record."""
    from ..errors import ConfigError
    from ..registry import load_plugin

    try:
        plugin = load_plugin("dkim")
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    domain = domain.strip().lower().rstrip(".")
    path = output or Path(f"{domain}.{selector}.key")
    name = "ed25519-sha256" if algorithm == "ed25519" else "rsa-sha256"
    try:
        record = plugin.keygen(path, name, bits)  # type: ignore[attr-defined]
    except FileExistsError:
        click.echo(f"error: {path} exists; choose another file or selector (a key is never replaced)", err=True)
        ctx.exit(1)
    except (OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(1)
    zone = plugin.zone_line(domain, selector, record)  # type: ignore[attr-defined]
    entry = f"{{domain: {domain}, selector: {selector}, key_file: {path}" + \
        (", algorithm: ed25519-sha256}" if algorithm == "ed25519" else "}")
    if as_json:
        echo_json({"domain": domain, "selector": selector, "algorithm": name, "key_file": str(path),
                   "record_name": f"{selector}._domainkey.{domain}", "record": record, "zone": zone,
                   "config": entry})
        return
    click.echo(f"private key written to {path} (mode 0600); keep it secret, back it up")
    click.echo(f"\npublish this TXT record, name {selector}._domainkey.{domain}:\n\n  {record}\n")
    click.echo(f"as a zone file line:\n\n  {zone}\n")
    click.echo(f"then add to the dkim plugin's keys:\n\n  - {entry}")
