#!/usr/bin/env python3
"""Open COUNT listening TCP sockets on addresses of 127/8 (each a line of
/proc/net/tcp), in processes of 19,000 sockets each (an account's usual
limit of open files is 20,000), write FLAG once all are open, and keep them
for SECONDS. Exit 1 at once if any process cannot open its share. The
attacker of least_privilege::a_tcp_table_grown_past_64_mib_…"""
import ctypes
import os
import resource
import signal
import socket
import sys
import time

count, flag, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
PER_PROCESS = 19000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
children = []
for p in range(0, count, PER_PROCESS):
    pid = os.fork()
    if pid == 0:
        try:
            # Ends with the parent, which the test kills.
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)
            held = []
            for i in range(p, min(count, p + PER_PROCESS)):
                s = socket.socket()
                s.bind(("127.%d.%d.%d" % (20 + (i >> 16), (i >> 8) & 255, i & 255), 7000))
                s.listen(0)
                held.append(s)
            open("%s.%d" % (flag, p), "w").close()
            time.sleep(seconds)
        except Exception as e:
            print("listeners %d: %s" % (p, e), file=sys.stderr)
        finally:
            os._exit(0)
    children.append((pid, p))
while not all(os.path.exists("%s.%d" % (flag, p)) for _, p in children):
    pid, _ = os.waitpid(-1, os.WNOHANG)
    if pid:
        print("a process of the listeners ended before it opened its share (%r)" % (os.waitstatus_to_exitcode(_),), file=sys.stderr)
        for child, _ in children:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass
        sys.exit(1)
    time.sleep(0.1)
open(flag, "w").close()
for _ in children:
    os.wait()
