"""Running a ``token_command``: the program an account or a smarthost login names to print an access token.

One runner for every XOAUTH2 login that takes its token from a command: the POP3 login
(``core/pop3/login.py``, ``pop3.token_command``) and the smarthost's SMTP AUTH
(``plugins/smarthost/auth.py``, ``auth.token_command``). Each caller turns a
``TokenCommandError`` into its own kind of failure.
"""

from __future__ import annotations

import asyncio
import shlex

#: At most this much of what a failing command wrote on stderr is kept in ``TokenCommandError.detail``.
DETAIL_CHARS = 200


class TokenCommandError(Exception):
    """The command gave no token: it could not be run, did not finish in time, failed or printed nothing.

    ``str()`` says which (naming the command, never what it printed). ``detail`` is the start of
    what it wrote on stderr, white space folded, for callers that show it. ``printed`` is the
    line it printed on stdout, a secret: never shown, only for scrubbing ``detail``.
    """

    def __init__(self, text: str, *, detail: str = "", printed: str = "") -> None:
        super().__init__(text)
        self.detail = detail
        self.printed = printed


async def run_token_command(command: list[str] | str, timeout: float) -> str:
    """Run ``command`` and return the first line it prints on stdout: the access token.

    A list is run as argv, a string by ``/bin/sh -c``; stdin is empty. Called by the logins
    that use XOAUTH2 with a ``token_command``, once per login. Raises ``TokenCommandError``
    when the command cannot be run, does not finish within ``timeout`` seconds (it is killed),
    exits non-zero or prints no token.
    """
    shown = command if isinstance(command, str) else shlex.join(command)
    pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE,
             "stdin": asyncio.subprocess.DEVNULL}
    try:
        if isinstance(command, str):
            proc = await asyncio.create_subprocess_shell(command, **pipes)
        else:
            proc = await asyncio.create_subprocess_exec(*command, **pipes)
    except OSError as exc:
        raise TokenCommandError(f"token_command {shown!r} cannot be run: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise TokenCommandError(f"token_command {shown!r} did not finish in {timeout:.0f}s") from None
    lines = out.decode("utf-8", "replace").strip().splitlines()
    token = lines[0].strip() if lines else ""
    if proc.returncode != 0 or not token:
        why = f"exited with status {proc.returncode}" if proc.returncode else "printed no token"
        detail = " ".join(err.decode("utf-8", "replace").split())[:DETAIL_CHARS]
        raise TokenCommandError(f"token_command {shown!r} {why}", detail=detail, printed=token)
    return token
