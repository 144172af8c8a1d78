#!/usr/bin/env python3
"""A TLS server that presents a given certificate, for the client's certificate-refusal tests.

    tls_server.py CERT KEY

Listens on 127.0.0.1 (port printed as "PORT <n>"), accepts one client and performs the TLS
handshake. Then prints "HANDSHAKE OK" or "HANDSHAKE FAILED <reason>", and how many bytes of
application data arrived after it ("RECEIVED <n>"): a client that refuses the certificate must
not have sent anything, its credentials least of all. Standard library only.
"""
import socket
import ssl
import sys


def main():
    certificate, key = sys.argv[1], sys.argv[2]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    print("PORT", listener.getsockname()[1], flush=True)
    connection, _ = listener.accept()
    connection.settimeout(10)
    received = 0
    try:
        with context.wrap_socket(connection, server_side=True) as tls:
            print("HANDSHAKE OK", flush=True)
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                received += len(data)
    except (ssl.SSLError, OSError) as error:
        print("HANDSHAKE FAILED", type(error).__name__, flush=True)
    print("RECEIVED", received, flush=True)


if __name__ == "__main__":
    main()
