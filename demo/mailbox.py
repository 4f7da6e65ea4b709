#!/usr/bin/env python3
"""A local mailbox for the demo: an SMTP server (aiosmtpd) on 127.0.0.1 that accepts every mail,
keeps it in a directory as NNN.eml, and prints one summary per mail as it arrives: who it is
for, the subject and the first link in its text (Bugsink's alerts link the issue).

    python demo/mailbox.py PORT DIR
"""

import email
import email.policy
import os
import re
import signal
import sys
import threading

from aiosmtpd.controller import Controller

LINK = re.compile(r"https?://\S+")


class Mailbox:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.count += 1
            name = os.path.join(self.directory, f"{self.count:03d}.eml")
        # Written whole, then renamed: whoever reads the directory never sees half a mail.
        with open(name + ".tmp", "wb") as f:
            f.write(envelope.content)
        os.replace(name + ".tmp", name)
        body = message.get_body(preferencelist=("plain",))
        link = LINK.search(body.get_content()) if body is not None else None
        print(f"to {', '.join(envelope.rcpt_tos)}: {message['subject']}", flush=True)
        print(f"  {link.group(0) if link else '(no link in the text)'}", flush=True)
        return "250 Message accepted for delivery"


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        sys.stderr.write("usage: python demo/mailbox.py PORT DIR\n")
        sys.exit(2)
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Mailbox(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"SMTP mailbox listening on 127.0.0.1:{port}, keeping mails in {directory}", flush=True)
    stop = threading.Event()
    # TERM (what demo.sh sends) and Ctrl-C both end it cleanly.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
