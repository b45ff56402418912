"""The mail that carries an RFC 8460 report (section 5.3): multipart/report, report-type "tlsrpt".

The report is a gzip-compressed JSON attachment (``application/tlsrpt+gzip``) whose file
name follows section 5.1 (``submitter!policy-domain!begin!end!id.json.gz``); the headers
``TLS-Report-Domain`` and ``TLS-Report-Submitter`` and the subject name the domain, the
submitter and the report id.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText


def filename(submitter: str, domain: str, start: float, end: float, unique: str) -> str:
    """``gw.example!example.com!1700000000!1700086399!ID.json.gz`` (RFC 8460 5.1)."""
    return f"{submitter}!{domain}!{int(start)}!{int(end)}!{unique}.json.gz"


def report_mail(*, sender: str, recipients: list[str], submitter: str, domain: str, report_id: str,
                gz: bytes, name: str, now: float, day: str) -> bytes:
    """The whole message (CRLF line ends) carrying one compressed report."""
    msg = MIMEMultipart("report", **{"report-type": "tlsrpt"})
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>"
    msg["Date"] = email.utils.formatdate(now, usegmt=True)
    msg["Message-ID"] = f"<{report_id}>"
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = submitter
    msg["Auto-Submitted"] = "auto-generated"
    text = (f"This is an aggregate TLS report (RFC 8460) from {submitter} about mail sent to {domain} "
            f"on {day} (UTC).\n")
    msg.attach(MIMEText(text, "plain", "utf-8"))
    part = MIMEApplication(gz, "tlsrpt+gzip", name=name)
    part.add_header("Content-Disposition", "attachment", filename=name)
    msg.attach(part)
    return msg.as_bytes(policy=email.policy.SMTP)
