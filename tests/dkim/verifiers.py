"""Two DKIM verifiers that are not dkimpy: OpenDKIM (``opendkim -t`` with test keys) and Perl's Mail::DKIM.

``.ci/install-dkim.sh`` installs both (Debian ``opendkim``, ``opendkim-tools``, ``libmail-dkim-perl``).

- ``opendkim_verify`` runs the OpenDKIM filter in test mode on a message file, with the public
  keys given in a ``TestPublicKeys`` file instead of DNS; it verifies RSA and Ed25519.
- ``perl_verify`` runs Mail::DKIM (``verify.pl``) with its resolver pointed at a test dnsmasq
  that serves the keys as TXT records. Debian 12's Mail::DKIM (1.20230212) knows no Ed25519:
  its verdict on those signatures is ``invalid`` (unsupported algorithm), so tests ask it about
  RSA signatures only.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
_AR = re.compile(r"dkim=(?P<result>\w+)(?: \([^)]*\))? header\.d=(?P<d>\S+) header\.i=\S+ header\.a=(?P<a>\S+) "
                 r"header\.s=(?P<s>[^\s;]+)")


@dataclass(frozen=True)
class Verdict:
    """One signature's result as a verifier gave it."""

    result: str
    domain: str
    selector: str
    algorithm: str
    detail: str = ""


def txt_records(records: dict[str, str]) -> list[str]:
    """dnsmasq ``txt-record`` lines for ``{name: value}``, split into strings of at most 255 characters."""
    lines = []
    for name, value in records.items():
        parts = [value[i:i + 255] for i in range(0, len(value), 255)]
        lines.append(f"txt-record={name}," + ",".join(f'"{p}"' for p in parts))
    return lines


def opendkim_verify(message: bytes, records: dict[str, str], workdir: Path) -> list[Verdict]:
    """OpenDKIM's verdict per signature of ``message``; ``records`` maps ``sel._domainkey.dom`` to the TXT value."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / "opendkim-keys.txt"
    keys.write_text("".join(f"{name} {value}\n" for name, value in records.items()))
    conf = workdir / "opendkim.conf"
    conf.write_text(f"Mode v\nTestPublicKeys {keys}\nSyslog no\nAlwaysAddARHeader yes\nMinimumKeyBits 1024\n")
    msg = workdir / "message.eml"
    msg.write_bytes(message)
    res = subprocess.run(["opendkim", "-x", str(conf), "-t", str(msg), "-vvv"], capture_output=True, text=True,
                         timeout=60, check=False)
    out = res.stdout + res.stderr
    header = next((line for line in out.splitlines() if "hname='Authentication-Results'" in line), None)
    if header is None:
        raise AssertionError(f"opendkim gave no Authentication-Results (exit {res.returncode}):\n{out}")
    return [Verdict(m["result"], m["d"], m["s"], m["a"]) for m in _AR.finditer(out)]


def perl_verify(message: bytes, nameserver: tuple[str, int]) -> tuple[str, list[Verdict]]:
    """Mail::DKIM's overall result and its verdict per signature; keys come from the DNS server ``nameserver``."""
    res = subprocess.run(["perl", str(HERE / "verify.pl"), nameserver[0], str(nameserver[1])], input=message,
                         capture_output=True, timeout=60, check=False)
    if res.returncode != 0:
        raise AssertionError(f"verify.pl failed ({res.returncode}): {res.stderr.decode(errors='replace')}")
    verdicts, overall = [], ""
    for line in res.stdout.decode().splitlines():
        fields = line.split("\t")
        if fields[0] == "overall":
            overall = fields[1]
        else:
            verdicts.append(Verdict(*fields[:4], fields[4] if len(fields) > 4 else ""))
    return overall, verdicts
