#!/usr/bin/env python3
"""A scripted AMQP 0-9-1 server that misbehaves on purpose, for the client's hostile-broker tests.

    hostile_broker.py SCENARIO

It listens on 127.0.0.1 (a port of the system's choosing, printed as "PORT <n>"), accepts one
client, performs the handshake, answers channel.open, queue.declare, basic.qos and
basic.consume, then plays SCENARIO and keeps the connection open (reading and discarding) until
the client leaves. Whatever happens, it exits within 30 s. Standard library only.

Scenarios: those in scenarios() below, each described there (among them, from issue 20's
review: continuation-flags, unsolicited-close-ok, unsolicited-cancel-ok, wide-headers and
header-flood), and these, which need more than bytes after consume-ok:

  deep-server-properties     server properties nested 5000 deep, in connection.start.
  no-replies                 opens channel 1, then answers nothing.
  consume-ok-with-violation  consume-ok and a frame of unknown type in one send (one TCP segment).
  flood-cancel-stop-reading  after consume-ok, basic.cancel for the consumer (noWait=false) over
                             and over, about 17 MB of them, and never reads again: the client's
                             cancel-ok replies fill both socket buffers and its writes stall.
                             Waits for the client to hang up.
  max-size-message           one legal message of 128 MiB (frame_max 131072, so body frames of
                             131064 bytes).
  stop-mid-frame             after consume-ok, half a frame, then silence (reading, discarding).
  flap                       accepts connection after connection; each: handshake, channel and
                             consumer answered, then closed 50 ms later. Prints "LOGIN <n>" per
                             login; 3 s after the first, stops listening and prints "DONE <n>".
  stall-after-first          the first connection is served, then closed by this side; each later
                             one gets no connection.start: prints "STALLED <n>" once its protocol
                             header arrived and "CLOSED <n> <seconds>" once the client hangs up.
"""
import os
import select
import signal
import socket
import struct
import sys
import time

# Every scenario ends by itself: the whole script within this many seconds.
LIFETIME = 30


def frame(frame_type, channel, payload, end=b"\xce"):
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def method(channel, class_id, method_id, arguments=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + arguments)


def shortstr(text):
    data = text if isinstance(text, bytes) else text.encode()
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


def void_array_headers(count):
    """Message headers holding one array of `count` void ('V') values: a byte each on the wire,
    a decoded value each in the client."""
    return table(shortstr("a") + b"A" + struct.pack(">I", count) + b"V" * count)


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


def open_channel_and_consumer(client, after_consume_ok=b""):
    """Answers channel.open, queue.declare and basic.qos until basic.consume, whose consume-ok
    goes out in one send with `after_consume_ok`. Returns the consumer tag."""
    while True:
        frame_type, channel, payload = client.read_frame()
        if frame_type != 1:
            continue
        class_and_method, arguments = struct.unpack(">HH", payload[:4]), payload[4:]
        if class_and_method == (20, 10):  # channel.open
            client.send(method(channel, 20, 11, longstr("")))
        elif class_and_method == (50, 10):  # queue.declare: reserved short, then the name
            name = arguments[3 : 3 + arguments[2]]
            client.send(method(channel, 50, 11, shortstr(name) + struct.pack(">II", 0, 0)))
        elif class_and_method == (60, 10):  # basic.qos
            client.send(method(channel, 60, 11))
        elif class_and_method == (60, 20):  # basic.consume: reserved short, queue, then the tag
            tag_at = 3 + arguments[2]
            tag = arguments[tag_at + 1 : tag_at + 1 + arguments[tag_at]].decode()
            client.send(method(channel, 60, 21, shortstr(tag)) + after_consume_ok)
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
        # Two property-flag words (bit 0 of the first continues it), then headers nested 5000 deep:
        # librabbitmq 0.11 reads the second word and decodes the headers after it, where a check
        # that assumes one word sees an empty table (the second word and the table's length).
        "continuation-flags": lambda tag: deliver(1, tag)
        + header(1, 1, flags=0x2001, properties=b"\x00\x00" + nested_table(5000))
        + body(1, b"x"),
        # Replies to requests the client never made: a close-ok, and a cancel-ok for its consumer.
        "unsolicited-close-ok": lambda tag: method(0, 10, 51),
        "unsolicited-cancel-ok": lambda tag: method(1, 60, 31, shortstr(tag)),
        # Headers holding 20,000 void values, twice the client's limit (20 KB on the wire).
        "wide-headers": lambda tag: deliver(1, tag) + header(1, 1, flags=0x2000, properties=void_array_headers(20_000)) + body(1, b"x"),
        # 1,200 small deliveries whose headers hold 9,000 void values each (within the limits):
        # 11 MB on the wire, about 250 MB decoded, for a consumer that does not take them.
        "header-flood": lambda tag: b"".join(
            deliver(1, tag, n) + header(1, 16, flags=0x2000, properties=void_array_headers(9000)) + body(1, b"x" * 16)
            for n in range(1, 1201)
        ),
        # A well-behaved delivery, to check the probe itself.
        "valid-delivery": lambda tag: deliver(1, tag) + header(1, 5) + body(1, b"hello"),
    }


def wait_for_hang_up(connection):
    """Waits, without reading, until the client closes the connection (or LIFETIME passes)."""
    poller = select.poll()
    poller.register(connection, select.POLLRDHUP)  # POLLHUP and POLLERR come anyway
    poller.poll(LIFETIME * 1000)


def flood_cancel_stop_reading(client):
    tag = open_channel_and_consumer(client)
    # 28 bytes each, answered by a cancel-ok of 27: about 16 MB each way, more than the client's
    # send buffer (4 MB at most here) and this side's receive buffer (which stays small: nobody
    # reads it) hold.
    cancel = method(1, 60, 30, shortstr(tag) + b"\x00")
    try:
        client.send(cancel * 600_000)
    except (ConnectionError, socket.timeout):
        return  # the client gave up while this side was still sending
    wait_for_hang_up(client.connection)


def max_size_message(client):
    tag = open_channel_and_consumer(client)
    size = 128 << 20  # the client's default maximumMessageSize
    chunk = 131072 - 8  # frame_max less a frame's header and end octet
    client.send(deliver(1, tag) + header(1, size))
    full = body(1, b"m" * chunk)
    for _ in range(size // chunk):
        client.send(full)
    client.send(body(1, b"m" * (size % chunk)))
    drain(client.connection)


def consume_ok_with_violation(client):
    # One send: consume-ok and a frame of unknown type arrive together.
    open_channel_and_consumer(client, after_consume_ok=frame(9, 1, b"x" * 8))
    drain(client.connection)


def stop_mid_frame(client):
    # A method frame announcing 44 bytes of payload, of which 13 come.
    open_channel_and_consumer(client, after_consume_ok=method(1, 60, 60, b"x" * 40)[:20])
    drain(client.connection)


def no_replies(client):
    # Opens channels, then never answers anything else (nor a close).
    while True:
        client.read_method(20, 10)
        client.send(method(1, 20, 11, longstr("")))


# Scenarios with a conversation of their own after the handshake (or none, as
# deep-server-properties's handshake fails).
CONVERSATIONS = {
    "no-replies": no_replies,
    "consume-ok-with-violation": consume_ok_with_violation,
    "flood-cancel-stop-reading": flood_cancel_stop_reading,
    "max-size-message": max_size_message,
    "stop-mid-frame": stop_mid_frame,
}


def serve_flap(listener):
    window = 3.0
    logins = 0
    first = None
    while first is None or time.monotonic() - first < window:
        if first is not None:
            listener.settimeout(max(0.001, window - (time.monotonic() - first)))
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            break
        first = first or time.monotonic()
        connection.settimeout(5)
        client = Client(connection)
        try:
            handshake(client)
            logins += 1
            print("LOGIN", logins, flush=True)
            open_channel_and_consumer(client)
            time.sleep(0.05)
        except (EOFError, ConnectionError, socket.timeout):
            pass
        finally:
            connection.close()
    listener.close()  # later attempts are refused
    print("DONE", logins, flush=True)


def serve_stall_after_first(listener):
    connection, _ = listener.accept()
    connection.settimeout(5)
    client = Client(connection)
    try:
        handshake(client)
        open_channel_and_consumer(client)
    finally:
        connection.close()
    print("SERVED 1", flush=True)
    number = 1
    while True:
        connection, _ = listener.accept()
        number += 1
        stalled = time.monotonic()
        try:
            Client(connection).read_exact(8)  # the protocol header; no connection.start follows
            print("STALLED", number, flush=True)
            stalled = time.monotonic()
            while connection.recv(65536):
                pass
        except (EOFError, ConnectionError, socket.timeout):
            pass
        finally:
            connection.close()
        print("CLOSED", number, round(time.monotonic() - stalled, 3), flush=True)


# Scenarios that take more than one connection.
LISTENERS = {"flap": serve_flap, "stall-after-first": serve_stall_after_first}


def drain(connection):
    """Reads and discards until the client leaves."""
    while connection.recv(65536):
        pass


def stop(*_):
    print("hostile_broker.py:", LIFETIME, "s passed, stopping", file=sys.stderr, flush=True)
    os._exit(0)


def main():
    # The test runner may start this with signals blocked (a mask a child inherits): unblock the
    # ones that stop it, so the test's terminate() and the alarm below work.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGALRM})
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(LIFETIME)
    name = sys.argv[1]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(LIFETIME)
    print("PORT", listener.getsockname()[1], flush=True)
    if name in LISTENERS:
        try:
            LISTENERS[name](listener)
        except (EOFError, ConnectionError, socket.timeout):
            pass
        return
    connection, _ = listener.accept()
    connection.settimeout(LIFETIME)
    client = Client(connection)
    try:
        if name == "deep-server-properties":
            handshake(client, start_properties=shortstr("n") + b"F" + nested_table(5000))
        else:
            handshake(client)
        if name in CONVERSATIONS:
            CONVERSATIONS[name](client)
        else:
            tag = open_channel_and_consumer(client)
            client.send(scenarios()[name](tag))
        drain(connection)
    except (EOFError, ConnectionError, socket.timeout):
        pass
    finally:
        connection.close()


if __name__ == "__main__":
    main()
