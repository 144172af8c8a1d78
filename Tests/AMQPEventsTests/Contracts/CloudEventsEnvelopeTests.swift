import AMQPClient
import Foundation
import Testing

@testable import AMQPEvents

struct Refund: AMQPEvent, Equatable {
    static let eventType = "com.example.payments.refund"
    static let schemaVersion = 2
    var orderId: String
    var cents: Int64
}

@Suite("Contracts: the three envelopes, written and read")
struct CloudEventsEnvelopeTests {
    let metadata = EventMetadata(
        type: Refund.eventType, messageID: "m-1", timestamp: Date(timeIntervalSince1970: 1_780_000_000), correlationID: "c-1",
        causationID: "k-1", schemaVersion: 2, appID: "payments", headers: ["x-tenant": .string("acme")], subject: "order-7")
    // Beyond a double's 53 bits: a payload read from a structured CloudEvent must not be rounded.
    let refund = Refund(orderId: "7", cents: 9_007_199_254_740_993)

    @Test("each envelope reads back as the same event and envelope", arguments: EventEnvelope.allCases)
    func roundTrip(_ envelope: EventEnvelope) throws {
        let coder = JSONEventCoder()
        let (properties, body) = try envelope.message(
            metadata: metadata, body: coder.encode(refund), contentType: coder.contentType, source: "/payments")
        let received = try ReceivedEnvelope.read(properties, body: body).get()
        #expect(received.metadata.envelope == envelope)
        #expect(try EventHandler.decode(Refund.self, received.body, wrapped: received.payloadIsWrapped, coder) == refund)
        var read = received.metadata
        #expect(read.type == metadata.type)
        #expect(read.messageID == "m-1")
        #expect(read.correlationID == "c-1")
        #expect(read.causationID == "k-1")
        #expect(read.schemaVersion == 2)
        #expect(read.subject == "order-7")
        #expect(read.timestamp == metadata.timestamp)
        #expect(read.headers["x-tenant"] == .string("acme"))
        if envelope != .amqp { #expect(read.source == "/payments") }
        read.envelope = .amqp
        read.source = nil
        #expect(read.headers.values.keys.allSatisfy { !$0.hasPrefix("ce-") }, "the ce- headers are the envelope's, not the application's")
    }

    @Test("a binary CloudEvent from another SDK: ce- headers (as bytes, as some clients send strings) and the data as the body")
    func foreignBinary() throws {
        let headers: AMQPFieldTable = [
            "ce-specversion": .bytes(Array("1.0".utf8)), "ce-id": .string("py-1"), "ce-type": .string(Refund.eventType),
            "ce-source": .string("/python"), "ce-time": .string("2026-12-06T10:00:00.123456+00:00"),
            "ce-schemaversion": .string("2"), "ce-correlationid": .string("c-9"), "x-other": .string("kept"),
        ]
        let properties = AMQPProperties(contentType: "application/json", headers: headers)
        let received = try ReceivedEnvelope.read(properties, body: Array(#"{"orderId":"8","cents":5}"#.utf8)).get()
        #expect(received.metadata.type == Refund.eventType)
        #expect(received.metadata.messageID == "py-1")
        #expect(received.metadata.source == "/python")
        #expect(received.metadata.correlationID == "c-9")
        #expect(received.metadata.schemaVersion == 2)
        #expect(received.metadata.timestamp != nil)
        #expect(received.metadata.headers.values.keys.sorted() == ["x-other"])
        #expect(try EventHandler.decode(Refund.self, received.body, wrapped: false, JSONEventCoder()) == Refund(orderId: "8", cents: 5))
    }

    @Test("a structured CloudEvent with its data as base64 (not JSON) is read from data_base64")
    func structuredBase64() throws {
        let data = Data(#"{"orderId":"9","cents":1}"#.utf8).base64EncodedString()
        let body = #"{"specversion":"1.0","id":"b-1","type":"com.example.payments.refund","source":"/x","data_base64":"\#(data)"}"#
        let properties = AMQPProperties(contentType: "application/cloudevents+json; charset=utf-8")
        let received = try ReceivedEnvelope.read(properties, body: Array(body.utf8)).get()
        #expect(!received.payloadIsWrapped)
        #expect(try EventHandler.decode(Refund.self, received.body, wrapped: false, JSONEventCoder()) == Refund(orderId: "9", cents: 1))
        #expect(received.metadata.schemaVersion == 1, "no schemaversion attribute: version 1")
    }

    @Test(
        "what is not a valid CloudEvent is refused with why",
        arguments: [
            ("application/cloudevents+json", #"{"specversion":"1.0","type":"t","source":"/s"}"#, "no id attribute"),
            ("application/cloudevents+json", #"{"specversion":"0.3","id":"1","type":"t","source":"/s"}"#, "specversion 0.3"),
            ("application/cloudevents+json", "[1, 2]", "the body is not a JSON object"),
            ("application/cloudevents+json", #"{"specversion":"1.0","id":"1","type":"t","source":"/s","data_base64":7}"#, "data_base64 is not base64"),
            ("application/cloudevents+avro", "…", "is not read here"),
        ])
    func invalid(_ contentType: String, _ body: String, _ why: String) throws {
        let result = ReceivedEnvelope.read(AMQPProperties(contentType: contentType), body: Array(body.utf8))
        guard case .failure(let error) = result else {
            Issue.record("read as an event")
            return
        }
        #expect(error.code == .decodingFailed)
        #expect(error.message.contains(why), "\(error.message)")
    }

    @Test("a hostile structured CloudEvent: a number no integer holds and a deeply nested extension are read quickly, no crash")
    func hostileStructured() throws {
        let nested = String(repeating: #"{"a":"#, count: 500) + "1" + String(repeating: "}", count: 500)
        let body = #"{"specversion":"1.0","id":"h","type":"t","source":"/s","huge":1e300,"deep":"# + nested + #","data":{"orderId":"9","cents":1}}"#
        let started = ContinuousClock.now
        let received = try ReceivedEnvelope.read(AMQPProperties(contentType: "application/cloudevents+json"), body: Array(body.utf8)).get()
        let took = started.duration(to: .now)
        print("a structured CloudEvent nested 500 deep read in \(took)")
        #expect(received.metadata.messageID == "h")
        #expect(try EventHandler.decode(Refund.self, received.body, wrapped: true, JSONEventCoder()) == Refund(orderId: "9", cents: 1))
        #expect(took < .milliseconds(500), "reading a message's envelope must not cost seconds of CPU")
    }

    @Test("a binary CloudEvent whose id header is a number is refused")
    func binaryHeaderNotText() {
        let properties = AMQPProperties(
            headers: ["ce-specversion": .string("1.0"), "ce-id": .int32(1), "ce-type": .string("t"), "ce-source": .string("/s")])
        guard case .failure(let error) = ReceivedEnvelope.read(properties, body: []) else {
            Issue.record("read as an event")
            return
        }
        #expect(error.message.contains("ce-id is not a string"))
    }
}
