import Foundation
import Synchronization
public import Tracing
public import W3CTraceContext

/// A small tracer for the samples and tests: W3C trace context (`traceparent`, `tracestate`)
/// through swift-w3c-trace-context, spans written out as one line each when they end.
///
/// A service would bootstrap swift-otel instead (see the *Observability* article); it propagates
/// the same headers. The samples do not, because swift-otel and its gRPC exporter take minutes to
/// build on every clean CI run, for spans that would then go to no collector.
public final class W3CTracer: Tracer, Sendable {
    public typealias Span = W3CSpan

    /// Receives each span as it ends.
    let export: @Sendable (W3CSpan.Finished) -> Void

    public init(export: @escaping @Sendable (W3CSpan.Finished) -> Void) {
        self.export = export
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> W3CSpan {
        let parent = context()
        let parentTrace = parent.w3cTraceContext
        let trace = TraceContext(
            traceID: parentTrace?.traceID ?? .random(),
            spanID: .random(),
            flags: parentTrace?.flags ?? .sampled,
            state: parentTrace?.state ?? TraceState())
        var spanContext = parent
        spanContext.w3cTraceContext = trace
        return W3CSpan(
            operationName: operationName, kind: kind, context: spanContext, parentSpanID: parentTrace?.spanID,
            start: instant().nanosecondsSinceEpoch, export: export)
    }

    public func forceFlush() {}

    public func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract
    ) where Extract.Carrier == Carrier {
        guard let traceParent = extractor.extract(key: "traceparent", from: carrier) else { return }
        let traceState = extractor.extract(key: "tracestate", from: carrier)
        // A malformed header starts a new trace rather than failing the message.
        if let trace = try? TraceContext(traceParentHeaderValue: traceParent, traceStateHeaderValue: traceState) {
            context.w3cTraceContext = trace
        }
    }

    public func inject<Carrier, Inject: Injector>(
        _ context: ServiceContext, into carrier: inout Carrier, using injector: Inject
    ) where Inject.Carrier == Carrier {
        guard let trace = context.w3cTraceContext else { return }
        injector.inject(trace.traceParentHeaderValue, forKey: "traceparent", into: &carrier)
        if let state = trace.traceStateHeaderValue, !state.isEmpty {
            injector.inject(state, forKey: "tracestate", into: &carrier)
        }
    }

    /// Writes each span to standard error as one line.
    public static func printing() -> W3CTracer {
        W3CTracer { span in
            FileHandle.standardError.write(Data("\(span)\n".utf8))
        }
    }
}

/// A span of ``W3CTracer``.
public final class W3CSpan: Span, Sendable {
    /// What a span was, once it ended.
    public struct Finished: Sendable, CustomStringConvertible {
        public var operationName: String
        public var kind: SpanKind
        public var trace: TraceContext
        public var parentSpanID: SpanID?
        public var links: [TraceContext]
        public var attributes: SpanAttributes
        public var errors: [String]
        public var durationNanoseconds: UInt64

        /// The span as one line. Names, the message's attributes (routing key, message id) and
        /// errors can hold a sender's text: escaped.
        public var description: String {
            var line = "[span] \(printable(operationName)) (\(kind)) trace=\(trace.traceID) span=\(trace.spanID)"
            if let parentSpanID { line += " parent=\(parentSpanID)" }
            for link in links { line += " link=\(link.traceID)/\(link.spanID)" }
            line += " duration=\(Double(durationNanoseconds) / 1_000_000)ms"
            var names: [String] = []
            attributes.forEach { name, _ in names.append(name) }
            for name in names.sorted() {
                if let value = attributes.get(name) { line += " \(name)=\(Self.text(value))" }
            }
            for error in errors { line += " error=\"\(printable(error, limit: 1024))\"" }
            return line
        }

        private static func text(_ value: SpanAttribute) -> String {
            switch value {
            case .string(let string): "\"\(printable(string))\""
            case .int64(let number): "\(number)"
            case .int32(let number): "\(number)"
            case .double(let number): "\(number)"
            case .bool(let flag): "\(flag)"
            default: printable("\(value)")
            }
        }
    }

    private struct State {
        var operationName: String
        var attributes: SpanAttributes = [:]
        var links: [TraceContext] = []
        var errors: [String] = []
        var ended = false
    }

    public let context: ServiceContext
    public let kind: SpanKind
    public let parentSpanID: SpanID?
    private let start: UInt64
    private let state: Mutex<State>
    private let export: @Sendable (Finished) -> Void

    init(
        operationName: String, kind: SpanKind, context: ServiceContext, parentSpanID: SpanID?, start: UInt64,
        export: @escaping @Sendable (Finished) -> Void
    ) {
        self.context = context
        self.kind = kind
        self.parentSpanID = parentSpanID
        self.start = start
        self.export = export
        self.state = Mutex(State(operationName: operationName))
    }

    /// This span's trace and span id.
    public var trace: TraceContext { context.w3cTraceContext! }

    public var operationName: String {
        get { state.withLock { $0.operationName } }
        set { state.withLock { $0.operationName = newValue } }
    }

    public var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set { state.withLock { $0.attributes = newValue } }
    }

    public var isRecording: Bool { state.withLock { !$0.ended } }

    public func setStatus(_ status: SpanStatus) {}

    public func addEvent(_ event: SpanEvent) {}

    public func recordError<Instant: TracerInstant>(
        _ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant
    ) {
        state.withLock { $0.errors.append("\(error)") }
    }

    public func addLink(_ link: SpanLink) {
        guard let linked = link.context.w3cTraceContext else { return }
        state.withLock { $0.links.append(linked) }
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let end = instant().nanosecondsSinceEpoch
        let finished = state.withLock { state -> Finished? in
            guard !state.ended else { return nil }
            state.ended = true
            return Finished(
                operationName: state.operationName, kind: kind, trace: trace, parentSpanID: parentSpanID,
                links: state.links, attributes: state.attributes, errors: state.errors,
                durationNanoseconds: end >= start ? end - start : 0)
        }
        if let finished { export(finished) }
    }
}

extension ServiceContext {
    /// The W3C trace context of the current span, as ``W3CTracer`` keeps it.
    public var w3cTraceContext: TraceContext? {
        get { self[W3CTraceContextKey.self] }
        set { self[W3CTraceContextKey.self] = newValue }
    }
}

private enum W3CTraceContextKey: ServiceContextKey {
    typealias Value = TraceContext
}
