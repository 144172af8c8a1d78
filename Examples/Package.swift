// swift-tools-version:6.2
import PackageDescription

let strictSwift6: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// The seeds' samples and the `amqp-events` operators' tool, on the libraries of the package
// above (with its SQLite trait, for the bookstore's outbox). Run by scripts/run-samples.sh; their
// tests (most on the in-memory broker) by scripts/test.sh.
let package = Package(
    name: "swift-amqp-client-examples",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "user-events-producer", targets: ["UserEventsProducer"]),
        .executable(name: "user-events-consumer", targets: ["UserEventsConsumer"]),
        .executable(name: "order-events", targets: ["OrderEvents"]),
        .executable(name: "food-delivery", targets: ["FoodDelivery"]),
        .executable(name: "bookstore", targets: ["Bookstore"]),
        .executable(name: "amqp-events", targets: ["AMQPEventsTool"]),
    ],
    dependencies: [
        .package(name: "swift-amqp-client", path: "..", traits: ["SQLite"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        // W3C trace context for the samples' small tracer, Prometheus text for --metrics.
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
    ],
    targets: [
        .target(name: "UserEvents", swiftSettings: strictSwift6),
        // What every sample shares: reaching the broker, --trace and --metrics.
        .target(
            name: "SampleSupport",
            dependencies: [
                .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "AMQPEvents", package: "swift-amqp-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "UserEventsProducer",
            dependencies: [
                "UserEvents", "SampleSupport", .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "UserEventsConsumer",
            dependencies: [
                "UserEvents", "SampleSupport", .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "OrderEvents",
            dependencies: [
                "SampleSupport", .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "AMQPEvents", package: "swift-amqp-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "FoodDelivery",
            dependencies: [
                "SampleSupport", .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "AMQPEvents", package: "swift-amqp-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "Bookstore",
            dependencies: [
                "SampleSupport", .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "AMQPEvents", package: "swift-amqp-client"),
                .product(name: "AMQPEventsSQLite", package: "swift-amqp-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strictSwift6
        ),
        // The operators' tool for AMQPEvents services' parking lots.
        .executableTarget(
            name: "AMQPEventsTool",
            dependencies: [
                .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "AMQPEvents", package: "swift-amqp-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        // The samples' own tests: their handlers on the in-memory broker (AMQPEventsTesting), their
        // event contracts, what they print, and their tracer against a broker ($AMQP_URL).
        .testTarget(
            name: "SampleTests",
            dependencies: [
                "OrderEvents", "FoodDelivery", "Bookstore", "SampleSupport",
                .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "AMQPEvents", package: "swift-amqp-client"),
                .product(name: "AMQPEventsSQLite", package: "swift-amqp-client"),
                .product(name: "AMQPEventsTesting", package: "swift-amqp-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            ],
            swiftSettings: strictSwift6
        ),
    ],
    swiftLanguageModes: [.v6]
)
