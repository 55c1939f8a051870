"""Email: SMTP ``send_batch`` over STARTTLS + AUTH vs a loop of ``aiosmtplib.send``.

Both sides send the same messages (plain text + HTML alternative) to the same aiosmtpd
server requiring STARTTLS and AUTH. cloudrift's ``smtp`` provider reuses one
connection for the whole batch; ``aiosmtplib.send`` opens, upgrades and authenticates
a connection per message (what a plain loop over the SDK's one-shot helper does).
"""

from __future__ import annotations

import dataclasses
import email.message
import email.utils
import ssl

from benchmarks import _servers
from benchmarks._harness import Row, Settings, compare, throughput_row

TARGET = 2.5
SENDER = "bench@example.com"
TEXT = "Hello,\n\nyour report is ready.\n" * 5
HTML = "<p>Hello,</p><p>your report is <b>ready</b>.</p>" * 5


async def run(settings: Settings) -> list[Row]:
    """send_batch of 500 (one reused connection) vs 500 one-connection aiosmtplib.send calls."""
    import aiosmtplib

    from cloudrift.email import EmailMessage, get_email

    count = settings.n(500, minimum=5)
    # Each round sends 2 x 500 mails with TLS handshakes; 5 rounds keep the spread honest
    # without dominating `make bench`.
    settings = settings if settings.smoke else dataclasses.replace(settings, rounds=5)
    with _servers.smtp_starttls() as server:
        options = server.client_options()
        mailer = get_email("smtp", **options, default_from=SENDER)
        context = ssl.create_default_context(cafile=options["ca_file"])
        batch = [
            EmailMessage(
                to=f"user{i}@example.com", subject=f"report {i}", body_text=TEXT, body_html=HTML
            )
            for i in range(count)
        ]

        async def ours() -> None:
            ids = await mailer.send_batch(batch)
            assert len(ids) == count

        async def baseline() -> None:
            for i in range(count):
                msg = email.message.EmailMessage()
                msg["From"] = SENDER
                msg["To"] = f"user{i}@example.com"
                msg["Subject"] = f"report {i}"
                msg["Date"] = email.utils.formatdate(localtime=True)
                msg["Message-ID"] = email.utils.make_msgid()
                msg.set_content(TEXT)
                msg.add_alternative(HTML, subtype="html")
                await aiosmtplib.send(
                    msg,
                    hostname=options["host"],
                    port=options["port"],
                    start_tls=True,
                    username=options["username"],
                    password=options["password"],
                    tls_context=context,
                )

        try:
            before = len(server.received)
            cmp = await compare(ours, baseline, ops=count, settings=settings)
            delivered = len(server.received) - before
            runs = (settings.rounds + settings.warmup) * 2
            if delivered != count * runs:
                raise RuntimeError(f"server received {delivered} mails, expected {count * runs}")
            sessions = server.connections_used
        finally:
            await mailer.close()
    return [
        throughput_row(
            "email",
            f"SMTP send_batch of {count} over STARTTLS+AUTH",
            cmp,
            unit="msgs/s",
            target=TARGET,
            baseline_name="aiosmtplib.send loop, 1 connection per message",
            note=f"{sessions} SMTP connections in total over every round (cloudrift: 1); "
            f"every mail checked as received; {_servers.started_note('aiosmtpd')}",
        )
    ]
