#!/usr/bin/env python3
# A TLS terminator for the integration suite: accepts TLS on 127.0.0.1:LISTEN_PORT with the
# certificate+key in PEM and forwards the plaintext to 127.0.0.1:TARGET_PORT (a Tansu broker that
# advertises 127.0.0.1:LISTEN_PORT). Tansu 0.6.0's own tls:// listener does not complete handshakes.
# Usage: tls-terminator.py LISTEN_PORT TARGET_PORT CERT_AND_KEY.pem
import socket, ssl, sys, threading
lp, tp, pem = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(pem)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(("127.0.0.1", lp)); srv.listen(64)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except Exception: pass
    finally:
        for s in (a, b):
            try: s.close()
            except Exception: pass
def handle(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except Exception as e:
        print("handshake failed:", e, flush=True); c.close(); return
    print("TLS connection:", t.version(), t.cipher()[0], flush=True)
    u = socket.create_connection(("127.0.0.1", tp))
    threading.Thread(target=pump, args=(t, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, t), daemon=True).start()
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
