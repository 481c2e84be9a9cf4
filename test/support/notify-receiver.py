"""The socket systemd listens on for sd_notify(3), for test/systemd.test.ts
(Node has no AF_UNIX datagram sockets).

  notify-receiver.py ADDRESS [--stop-on-ready]

Binds an AF_UNIX datagram socket at ADDRESS (a path, or "@name" for the
abstract name, bound at its exact length as systemd binds it), prints
"bound", then one JSON object a line for each datagram: its text and the
sender's pid from SCM_CREDENTIALS, which systemd uses to tell the main
process (NotifyAccess=main) from any other. With --stop-on-ready the sender
of READY=1 is frozen (SIGSTOP) before anything else happens, so that the
test sees what the sender had done when it sent it, and nothing more."""
import json
import os
import signal
import socket
import struct
import sys

address = sys.argv[1]
stop_on_ready = '--stop-on-ready' in sys.argv[2:]
if address.startswith('@'):
    address = '\0' + address[1:]
receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
receiver.bind(address)
print(json.dumps({'bound': True}), flush=True)
UCRED = struct.Struct('iII')
while True:
    data, ancillary, _flags, _sender = receiver.recvmsg(65536, socket.CMSG_SPACE(UCRED.size))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = UCRED.unpack(payload[:UCRED.size])[0]
    text = data.decode('utf-8', 'replace')
    stopped = False
    if stop_on_ready and pid is not None and 'READY=1' in text.split('\n'):
        os.kill(pid, signal.SIGSTOP)
        stopped = True
    print(json.dumps({'pid': pid, 'text': text, 'stopped': stopped}), flush=True)
