import Tracing

/// Writes a trace context (W3C `traceparent`/`tracestate` with OpenTelemetry's propagator) into
/// a message's headers as long strings, the way other clients' instrumentations write them.
struct MessageHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout AMQPFieldTable) {
        headers[key] = .string(value)
    }
}

/// Reads a trace context from a message's headers: long strings (`S`, what the OpenTelemetry
/// instrumentations of Java, .NET, Python and Go write) or byte arrays (`x`).
struct MessageHeadersExtractor: Extractor {
    func extract(key: String, from headers: AMQPFieldTable) -> String? {
        switch headers[key] {
        case .string(let value): value
        case .bytes(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }
}
