#!/usr/bin/env python3
"""A TLS server that presents a given certificate, for the client's certificate-refusal tests.

    tls_server.py CERT KEY [--max-version 1.1]

Listens on 127.0.0.1 (port printed as "PORT <n>"), accepts one client and performs the TLS
handshake. Then prints "HANDSHAKE OK <version>" or "HANDSHAKE FAILED <reason>", and how many bytes
of application data arrived after it ("RECEIVED <n>"): a client that refuses the certificate must
not have sent anything, its credentials least of all. Standard library only.

--max-version 1.1 offers TLS 1.0 and 1.1 only, for a client that must refuse them; OpenSSL 3 needs
security level 0 for them (here, and in the client through OPENSSL_CONF=openssl-legacy-tls.cnf).
"""
import argparse
import socket
import ssl
import warnings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("certificate")
    parser.add_argument("key")
    parser.add_argument("--max-version", choices=["1.1"])
    arguments = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(arguments.certificate, arguments.key)
    if arguments.max_version == "1.1":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.set_ciphers("DEFAULT@SECLEVEL=0")
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
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
            print("HANDSHAKE OK", tls.version(), flush=True)
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
