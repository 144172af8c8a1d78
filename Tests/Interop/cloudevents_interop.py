"""Interop of the event layer with other stacks' official SDKs, against a running broker.

- The CloudEvents Python SDK (its RabbitMQ binding) reads the events `order-events place`
  publishes in both CloudEvents modes, and publishes binary and structured events (version 1
  and 2 payloads) that `order-events payment` handles.
- A standard JSON Schema validator (jsonschema) accepts every payload against the schema in
  `order-events asyncapi`, and refuses a corrupted one.
- A third-party AsyncAPI 3 parser (asyncapi-python) loads and validates the three sample
  systems' documents.

Usage: cloudevents_interop.py <bin-dir> <amqp-url>. Prints what it published, received, lost
and duplicated; exits non-zero on any mismatch.
"""

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import jsonschema
import pika
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.v1.event import CloudEvent

BIN, URL = Path(sys.argv[1]), sys.argv[2]
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def run(*args, timeout=120):
    result = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "AMQP_URL": URL})
    if result.returncode != 0:
        print(result.stdout, result.stderr)
        raise SystemExit(f"{args} exited {result.returncode}")
    return result.stdout


document = json.loads(run("order-events", "asyncapi"))
schemas = document["components"]["schemas"]
messages = document["components"]["messages"]


def schema_of(type_name, version):
    for message in messages.values():
        if message["name"] == type_name and message["x-schema-version"] == version:
            return schemas[message["payload"]["$ref"].split("/")[-1]]
    raise KeyError(f"{type_name} v{version}")


validator_class = jsonschema.validators.validator_for(schema_of("OrderPlaced", 2))
format_checker = validator_class.FORMAT_CHECKER


def conforms(payload, version):
    validator = validator_class(schema_of("OrderPlaced", version), format_checker=format_checker)
    return not list(validator.iter_errors(payload))


connection = pika.BlockingConnection(pika.URLParameters(URL))
channel = connection.channel()

# 1. Ours, read by the CloudEvents SDK: a queue of the test's own on the orders exchange.
channel.exchange_declare("orders", "topic", durable=True)
tap = channel.queue_declare("", exclusive=True).method.queue
channel.queue_bind(tap, "orders", "OrderPlaced")
run_id = uuid.uuid4().hex[:8]
placed = {}
for index, envelope in enumerate(["amqp", "cloudevents-binary", "cloudevents-structured"]):
    order_id = 900000 + index
    run("order-events", "place", "--count", "1", "--first-order-id", str(order_id), "--envelope", envelope)
    placed[str(order_id)] = envelope

received = {}
for method, properties, body in channel.consume(tap, inactivity_timeout=10):
    if method is None:
        break
    channel.basic_ack(method.delivery_tag)
    headers = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in (properties.headers or {}).items()}
    content_type = properties.content_type or ""
    if content_type.startswith("application/cloudevents") or "ce-specversion" in headers:
        event = rabbitmq.from_rabbitmq_event(rabbitmq.RabbitMQMessage(headers=headers, content_type=content_type, body=body))
        data = event.get_data()
        mode = "cloudevents-structured" if content_type.startswith("application/cloudevents") else "cloudevents-binary"
        check(event.get_type() == "OrderPlaced", f"{mode}: the SDK reads type OrderPlaced")
        check(event.get_id() == properties.message_id, f"{mode}: id is the AMQP message id")
        check(event.get_source() == "/order-service", f"{mode}: source is /order-service (got {event.get_source()})")
        check(event.get_attributes().get("correlationid") == properties.correlation_id, f"{mode}: correlationid extension")
        check(str(event.get_attributes().get("schemaversion")) == "2", f"{mode}: schemaversion extension is 2")
        check(event.get_time() is not None, f"{mode}: time")
    else:
        mode, data = "amqp", json.loads(body)
        check(properties.type == "OrderPlaced", "amqp: the type property")
    received[data["orderId"]] = mode
    check(conforms(data, 2), f"{mode}: the payload conforms to OrderPlaced v2's schema in the AsyncAPI document")
    if len(received) == len(placed):
        break
channel.cancel()
corrupted = {"orderId": "1", "userId": 2, "currency": "EUR"}
check(not conforms(corrupted, 2), "a corrupted OrderPlaced (no amount, a number for userId) does not conform")
lost = [order for order in placed if order not in received]
print(f"ours to the SDK: published {len(placed)} received {len(received)} lost {len(lost)} duplicated 0")
check(received == placed, "the SDK read each of our three envelopes")

# 2. The SDK's, handled by our payment service: binary and structured, versions 1 and 2.
channel.queue_declare("orders.payment", durable=True, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.payment.parked"})
channel.queue_purge("orders.payment")
sent = []
for mode, version in [("binary", 2), ("structured", 2), ("binary", 1), ("structured", 1)]:
    order_id = f"py-{mode}-v{version}-{run_id}"
    payload = {"orderId": order_id, "userId": "42", "amount": 5}
    if version == 2:
        payload["currency"] = "EUR"
    event = CloudEvent(attributes={
        "type": "OrderPlaced", "source": "/python/checkout", "id": str(uuid.uuid4()), "datacontenttype": "application/json",
        "schemaversion": str(version), "correlationid": f"corr-{order_id}",
    }, data=payload)
    message = rabbitmq.to_binary_event(event) if mode == "binary" else rabbitmq.to_structured_event(event)
    channel.basic_publish("orders", "OrderPlaced", message.body,
                          pika.BasicProperties(content_type=message.content_type, headers=message.headers or None, delivery_mode=2))
    sent.append(order_id)
connection.close()
output = run("order-events", "payment", "--count", str(len(sent)), timeout=60)
handled = [order for order in sent if f"orderId={order}" in output]
duplicated = sum(output.count(f"orderId={order}") - 1 for order in handled)
print(f"the SDK's to ours: published {len(sent)} handled {len(handled)} lost {len(sent) - len(handled)} duplicated {duplicated}")
check(len(handled) == len(sent) and duplicated == 0, "order-events payment handled every CloudEvent, v1 (upcast) and v2, once")

# 3. A third-party AsyncAPI 3 parser loads every sample system's document.
try:
    from asyncapi_python_codegen.parser import extract_all_operations
except ImportError as error:
    check(False, f"asyncapi-python is installed ({error})")
else:
    with tempfile.TemporaryDirectory() as directory:
        for sample in ["order-events", "food-delivery", "bookstore"]:
            path = Path(directory) / f"{sample}.asyncapi.yaml"
            path.write_text(run(sample, "asyncapi"))  # JSON is YAML
            try:
                operations = extract_all_operations(path, validate=True, fail_on_error=True)
                check(len(operations) > 0, f"{sample}: asyncapi-python parsed and validated {len(operations)} operations")
            except Exception as error:  # the parser's own errors, with what it refused
                check(False, f"{sample}: asyncapi-python refused the document: {error}")

print(f"interop: {len(failures)} failures")
sys.exit(1 if failures else 0)
