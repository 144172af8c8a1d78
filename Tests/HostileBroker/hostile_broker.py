#!/usr/bin/env python3
"""A scripted AMQP 0-9-1 server that misbehaves on purpose, for the client's hostile-broker tests.

    hostile_broker.py SCENARIO

Scenarios: those in scenarios() below, "deep-server-properties" (in connection.start) and
"no-replies" (opens channel 1, then answers nothing).

It listens on 127.0.0.1 (a port of the system's choosing, printed as "PORT <n>"), accepts one
client, performs the handshake, answers channel.open and basic.consume, then plays SCENARIO
and keeps the connection open (reading and discarding) until the client leaves or 30 s pass.
Standard library only.
"""
import socket
import struct
import sys
import time


def frame(frame_type, channel, payload, end=b"\xce"):
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def method(channel, class_id, method_id, arguments=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + arguments)


def shortstr(text):
    data = text.encode()
    return struct.pack(">B", len(data)) + data


def longstr(data):
    data = data if isinstance(data, bytes) else data.encode()
    return struct.pack(">I", len(data)) + data


def table(entries=b""):
    return struct.pack(">I", len(entries)) + entries


def nested_table(depth):
    """A table holding a table holding a table ... `depth` deep, each under the key "n"."""
    inner = table()
    for _ in range(depth - 1):
        inner = table(shortstr("n") + b"F" + inner)
    return inner


def deliver(channel, consumer_tag, delivery_tag=1):
    return method(channel, 60, 60, shortstr(consumer_tag) + struct.pack(">QB", delivery_tag, 0) + shortstr("") + shortstr("probe"))


def header(channel, body_size, class_id=60, flags=0, properties=b""):
    return frame(2, channel, struct.pack(">HHQH", class_id, 0, body_size, flags) + properties)


def body(channel, data):
    return frame(3, channel, data)


class Client:
    def __init__(self, connection):
        self.connection = connection
        self.buffer = b""

    def read_exact(self, count):
        while len(self.buffer) < count:
            chunk = self.connection.recv(65536)
            if not chunk:
                raise EOFError("the client closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_frame(self):
        frame_type, channel, size = struct.unpack(">BHI", self.read_exact(7))
        payload = self.read_exact(size)
        self.read_exact(1)
        return frame_type, channel, payload

    def read_method(self, class_id, method_id):
        """Reads frames until the given method; returns its arguments."""
        while True:
            frame_type, _, payload = self.read_frame()
            if frame_type == 1 and struct.unpack(">HH", payload[:4]) == (class_id, method_id):
                return payload[4:]

    def send(self, data):
        self.connection.sendall(data)


def handshake(client, start_properties=b""):
    client.read_exact(8)  # the protocol header
    client.send(method(0, 10, 10, bytes([0, 9]) + table(start_properties) + longstr("PLAIN") + longstr("en_US")))
    client.read_method(10, 11)  # start-ok
    client.send(method(0, 10, 30, struct.pack(">HIH", 2047, 131072, 0)))
    client.read_method(10, 31)  # tune-ok
    client.read_method(10, 40)  # open
    client.send(method(0, 10, 41, shortstr("")))


def open_channel_and_consumer(client):
    client.read_method(20, 10)
    client.send(method(1, 20, 11, longstr("")))
    arguments = client.read_method(60, 20)
    queue_length = arguments[2]
    tag_at = 3 + queue_length
    tag = arguments[tag_at + 1 : tag_at + 1 + arguments[tag_at]].decode()
    client.send(method(1, 60, 21, shortstr(tag)))
    return tag


# Each scenario: (what it sends after the handshake and the consumer's start, given the tag).
def scenarios():
    many = 2000
    return {
        # Properties of class 10 where basic's are expected: librabbitmq decodes a smaller struct.
        "header-class": lambda tag: deliver(1, tag) + header(1, 4, class_id=10, properties=b"\x00" * 8) + body(1, b"evil"),
        # A body of 2^62 bytes announced.
        "huge-body-size": lambda tag: deliver(1, tag) + header(1, 1 << 62) + body(1, b"x"),
        # Message headers nested 5000 deep: librabbitmq 0.11 would recurse 5000 times.
        "deep-headers": lambda tag: deliver(1, tag) + header(1, 1, flags=0x2000, properties=nested_table(5000)) + body(1, b"x"),
        # Frames on channels the client never opened, each of which librabbitmq would keep a pool for.
        "unopened-channels": lambda tag: b"".join(method(ch, 20, 20, b"\x01") for ch in range(100, 100 + many)),
        # Frames of an unknown type, which librabbitmq drops silently but keeps the memory of.
        "unknown-frame-type": lambda tag: b"".join(frame(9, ch, b"x" * 64) for ch in range(100, 100 + many)),
        # A body frame with no content header before it.
        "body-without-header": lambda tag: body(1, b"orphan"),
        # A second deliver while the first message is incomplete.
        "second-deliver": lambda tag: deliver(1, tag, 1) + header(1, 10) + deliver(1, tag, 2),
        # More body than the header announced.
        "too-much-body": lambda tag: deliver(1, tag) + header(1, 5) + body(1, b"0123456789"),
        # A frame larger than the negotiated frame_max.
        "oversized-frame": lambda tag: struct.pack(">BHI", 1, 1, 10_000_000) + b"\x00" * 1024,
        # A frame that does not end with 0xCE.
        "bad-frame-end": lambda tag: frame(1, 1, struct.pack(">HH", 20, 20) + b"\x01", end=b"\x00"),
        # A method only clients send, with a field table librabbitmq would decode.
        "client-method": lambda tag: method(1, 50, 10, b"\x00\x00" + shortstr("q") + b"\x00" + nested_table(3000)),
        # A well-behaved delivery, to check the probe itself.
        "valid-delivery": lambda tag: deliver(1, tag) + header(1, 5) + body(1, b"hello"),
    }


def main():
    name = sys.argv[1]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    print("PORT", listener.getsockname()[1], flush=True)
    connection, _ = listener.accept()
    connection.settimeout(30)
    client = Client(connection)
    try:
        if name == "deep-server-properties":
            handshake(client, start_properties=shortstr("n") + b"F" + nested_table(5000))
        elif name == "no-replies":
            # Opens channels, then never answers anything else (nor a close).
            handshake(client)
            while True:
                arguments = client.read_method(20, 10)
                client.send(method(1, 20, 11, longstr("")))
        else:
            handshake(client)
            tag = open_channel_and_consumer(client)
            client.send(scenarios()[name](tag))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and connection.recv(65536):
            pass
    except (EOFError, ConnectionError, socket.timeout):
        pass
    finally:
        connection.close()


if __name__ == "__main__":
    main()
