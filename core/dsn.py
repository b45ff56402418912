"""Delivery status notifications (RFC 3464): the bounce and delay reports a sender reads.

``compose`` builds one ``multipart/report; report-type=delivery-status`` message
with three parts, the way mail clients expect them:

1. ``text/plain``: what happened, in words a person understands, one paragraph
   per recipient with the remote server's reply;
2. ``message/delivery-status``: the machine-readable fields (Reporting-MTA,
   Arrival-Date, then per recipient Final-Recipient, Action, Status (RFC 3463),
   Remote-MTA, Diagnostic-Code, Last-Attempt-Date);
3. ``text/rfc822-headers``: the header of the original message.

The report is built with Python's ``email`` package (policy SMTP, CRLF line
ends) and is sent from ``MAILER-DAEMON@<hostname>`` with ``Auto-Submitted:
auto-replied`` (RFC 3834). Deciding *whether* to send one is ``bounces.py``'s job.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid

from .durations import human_duration
from .errors import Reply

FAILED = "failed"
DELAYED = "delayed"

SUBJECT_FAILED = "Undelivered Mail Returned to Sender"
SUBJECT_DELAYED = "Delayed Mail (still being retried)"

# RFC 3463 subject.detail -> what it means, for the human-readable part.
_MEANINGS: dict[str, str] = {
    "1.1": "the address does not exist at the destination",
    "1.2": "the destination domain does not exist or accepts no mail",
    "1.3": "the address is not a valid email address",
    "1.6": "the recipient has moved and left no forwarding address",
    "2.1": "the mailbox is disabled and does not accept messages",
    "2.2": "the recipient's mailbox is full",
    "2.3": "the message is larger than the recipient accepts",
    "3.4": "the message is larger than the receiving system accepts",
    "4.1": "the recipient's mail server did not answer",
    "4.2": "the connection to the recipient's mail server was lost or refused",
    "4.4": "no mail server could be found for the recipient's domain",
    "4.7": "delivery took too long and was given up",
    "5.0": "the receiving system could not understand the message",
    "6.7": "the receiving system does not support the international address",
    "7.1": "the receiving system refused the message by its policy",
    "7.0": "the receiving system refused the message for security reasons",
}
_SUBJECTS: dict[str, str] = {
    "1": "there is a problem with the address",
    "2": "there is a problem with the recipient's mailbox",
    "3": "the receiving mail system has a problem",
    "4": "there was a network or routing problem on the way",
    "5": "the mail transaction with the receiving server failed",
    "6": "there is a problem with the message's content",
    "7": "the receiving system refused the message (security or policy)",
}


@dataclass(frozen=True)
class RecipientReport:
    """What a DSN says about one recipient.

    ``action`` is ``failed`` or ``delayed``; ``reply`` the last reply (from the
    remote server or made up by mailpipe); ``expired`` marks a failure because
    the recipient stayed undelivered too long; ``note`` is extra text for people
    (the retry policy's reason, e.g. until when it keeps trying).
    """

    address: str
    action: str
    reply: Reply
    remote_host: str | None = None
    last_attempt: float | None = None
    expired: bool = False
    note: str = ""

    @property
    def status(self) -> str:
        """The RFC 3463 status code: the reply's, else one made from its class."""
        if self.reply.enhanced:
            return self.reply.enhanced
        if self.expired:
            return "4.4.7"
        return f"{self.reply.code // 100}.0.0" if self.reply.code >= 400 else "5.0.0"


def explain(status: str) -> str:
    """A plain-language reading of an RFC 3463 status code."""
    cls, _, rest = status.partition(".")
    subject = rest.partition(".")[0]
    fallback = ("the receiving system could not take the message for now" if cls == "4"
                else "the receiving system refused the message")
    return _MEANINGS.get(rest) or _SUBJECTS.get(subject) or fallback


def _date(t: float) -> str:
    return format_datetime(datetime.fromtimestamp(t, UTC))


def _people_date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%A %d %B %Y %H:%M UTC")


def _wrap(text: str, indent: str = "") -> str:
    return "\n".join(textwrap.wrap(text, 72, initial_indent=indent, subsequent_indent=indent)) or indent


def _recipient_block(r: RecipientReport, waited: float) -> str:
    where = f"The server {r.remote_host} said" if r.remote_host else "The reason given was"
    if r.action == DELAYED:
        lead = f"<{r.address}>: not delivered yet, because {explain(r.status)}."
    elif r.expired:
        lead = (f"<{r.address}>: delivery was tried for {human_duration(waited)} without success "
                f"and has been given up. The last attempt failed because {explain(r.status)}.")
    else:
        lead = f"<{r.address}>: the message was refused because {explain(r.status)}."
    block = [_wrap(lead), _wrap(f"{where}: {r.reply}", "    ")]
    if r.note:
        block.append(_wrap(r.note, "    "))
    return "\n".join(block)


def human_text(hostname: str, subject: str | None, arrived: float, now: float,
               reports: list[RecipientReport]) -> str:
    """The text/plain part: what happened, recipient by recipient, in plain words."""
    failed = [r for r in reports if r.action == FAILED]
    delayed = [r for r in reports if r.action == DELAYED]
    about = f'your message "{subject}"' if subject else "your message"
    waited = now - arrived
    paras = [_wrap(f"This is the mail system at host {hostname}.")]
    if failed:
        paras.append(_wrap(
            f"I'm sorry to have to tell you that {about}, sent on {_people_date(arrived)}, could not be "
            f"delivered to {'some of its recipients' if len(failed) > 1 else 'one of its recipients'}. "
            "It has been returned to you. The details are below."
        ))
        paras += [_recipient_block(r, waited) for r in failed]
    if delayed:
        paras.append(_wrap(
            f"{'Delivery' if not failed else 'Delivery of the same message'} to the recipients below is "
            f"delayed: {about} has been waiting since {_people_date(arrived)} "
            f"({human_duration(waited)}). This is a warning only: you do NOT need to send the "
            "message again. The mail system keeps trying and will tell you if it finally gives up."
        ))
        paras += [_recipient_block(r, waited) for r in delayed]
    paras.append(_wrap(
        ("If you need help, forward this whole report to your mail administrator. " if failed else "")
        + "The header of your original message is attached below."
    ))
    paras.append(f"The {hostname} mail system")
    return "\n\n".join(paras) + "\n"


def delivery_status(hostname: str, arrived: float, reports: list[RecipientReport],
                    envelope_id: str | None = None) -> list[Message]:
    """The message/delivery-status blocks: per-message fields, then one block per recipient."""
    head = Message(policy=policy.SMTP)
    if envelope_id:
        head["Original-Envelope-Id"] = envelope_id
    head["Reporting-MTA"] = f"dns; {hostname}"
    head["Arrival-Date"] = _date(arrived)
    blocks = [head]
    for r in reports:
        b = Message(policy=policy.SMTP)
        b["Final-Recipient"] = f"rfc822; {r.address}"
        b["Action"] = r.action
        b["Status"] = r.status
        if r.remote_host:
            b["Remote-MTA"] = f"dns; {host_only(r.remote_host)}"
        b["Diagnostic-Code"] = f"smtp; {r.reply}"
        if r.last_attempt is not None:
            b["Last-Attempt-Date"] = _date(r.last_attempt)
        blocks.append(b)
    return blocks


def host_only(remote: str) -> str:
    """``mx.example.net:25`` or ``[::1]:25`` -> the host (Remote-MTA names a host, not a port)."""
    if remote.startswith("["):
        return remote[1:].partition("]")[0]
    host, sep, port = remote.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else remote


def original_header(data: bytes) -> bytes:
    """The header block of a stored message (up to the first empty line), CRLF ends."""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def compose(*, hostname: str, sender: str, original: bytes, arrived: float, now: float,
            reports: list[RecipientReport], envelope_id: str | None = None) -> tuple[str, bytes]:
    """Build the DSN to ``sender`` about ``reports``; return (Message-ID, bytes with CRLF ends)."""
    header = original_header(original)
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(header)
    try:
        subject = str(parsed.get("Subject", "") or "").strip() or None
    except Exception:  # noqa: BLE001 - a broken Subject must not stop the bounce
        subject = None
    failed = any(r.action == FAILED for r in reports)

    msg = EmailMessage(policy=policy.SMTP)
    msg_id = make_msgid(domain=hostname)
    msg["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    msg["To"] = sender
    msg["Subject"] = SUBJECT_FAILED if failed else SUBJECT_DELAYED
    msg["Date"] = _date(now)
    msg["Message-ID"] = msg_id
    if original_id := parsed.get("Message-ID"):
        msg["In-Reply-To"] = str(original_id).strip()
        msg["References"] = str(original_id).strip()
    msg["Auto-Submitted"] = "auto-replied"
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = "multipart/report; report-type=delivery-status"

    text = EmailMessage(policy=policy.SMTP)
    text.set_content(human_text(hostname, subject, arrived, now, reports), charset="utf-8")
    text["Content-Description"] = "Notification"
    del text["MIME-Version"]

    status = Message(policy=policy.SMTP)
    status["Content-Type"] = "message/delivery-status"
    status["Content-Description"] = "Delivery report"
    status.set_payload(delivery_status(hostname, arrived, reports, envelope_id))

    headers = EmailMessage(policy=policy.SMTP)
    headers.set_content(header.decode("utf-8", "replace"), subtype="rfc822-headers", charset="utf-8")
    headers["Content-Description"] = "Undelivered message headers" if failed else "Delayed message headers"
    del headers["MIME-Version"]

    for part in (text, status, headers):
        msg.attach(part)
    return msg_id, msg.as_bytes(policy=policy.SMTP)
