// swift-tools-version:6.2
import PackageDescription

let strictSwift6: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "swift-amqp-client",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "AMQPClient", targets: ["AMQPClient"]),
        .library(name: "AMQPEvents", targets: ["AMQPEvents"]),
        .library(name: "AMQPEventsSQLite", targets: ["AMQPEventsSQLite"]),
        .library(name: "AMQPEventsTesting", targets: ["AMQPEventsTesting"]),
        .executable(name: "user-events-producer", targets: ["UserEventsProducer"]),
        .executable(name: "user-events-consumer", targets: ["UserEventsConsumer"]),
        .executable(name: "order-events", targets: ["OrderEvents"]),
        .executable(name: "food-delivery", targets: ["FoodDelivery"]),
        .executable(name: "bookstore", targets: ["Bookstore"]),
        .executable(name: "amqp-bench", targets: ["AMQPBench"]),
        .executable(name: "amqp-probe", targets: ["AMQPProbe"]),
        .executable(name: "amqp-events", targets: ["AMQPEventsTool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
        // Only the samples and tests: W3C trace context for their small tracer, Prometheus text for --metrics.
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        // Only AMQPEventsSQLite: deduplication and the outbox in SQLite.
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev", "libssl-dev"]), .brew(["rabbitmq-c", "openssl"])]
        ),
        .target(
            name: "AMQPClient",
            dependencies: [
                "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            // Lifetimes: a frame read from librabbitmq borrows its memory and cannot leave the read call.
            swiftSettings: strictSwift6 + [.enableExperimentalFeature("Lifetimes")]
        ),
        .target(
            name: "UserEvents",
            path: "Sources/Samples/UserEvents",
            swiftSettings: strictSwift6
        ),
        // Typed events, publish/subscribe, work queues and request/reply on top of the client.
        .target(
            name: "AMQPEvents",
            dependencies: [
                "AMQPClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // For applications' tests: their handlers on the in-memory broker, with what happened recorded.
        .target(
            name: "AMQPEventsTesting",
            dependencies: ["AMQPEvents", "AMQPClient"],
            swiftSettings: strictSwift6
        ),
        // Deduplication and a transactional outbox in SQLite (GRDB), for services that want them.
        .target(
            name: "AMQPEventsSQLite",
            dependencies: [
                "AMQPEvents",
                "AMQPClient",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // What every sample shares: reaching the broker, --trace and --metrics.
        .target(
            name: "SampleSupport",
            dependencies: [
                "AMQPClient", "AMQPEvents",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/Samples/SampleSupport",
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "UserEventsProducer",
            dependencies: [
                "UserEvents", "AMQPClient", "SampleSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Samples/UserEventsProducer",
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "UserEventsConsumer",
            dependencies: [
                "UserEvents", "AMQPClient", "SampleSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Samples/UserEventsConsumer",
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "OrderEvents",
            dependencies: [
                "AMQPClient", "AMQPEvents", "SampleSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Samples/OrderEvents",
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "FoodDelivery",
            dependencies: [
                "AMQPClient", "AMQPEvents", "SampleSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Samples/FoodDelivery",
            swiftSettings: strictSwift6
        ),
        .executableTarget(
            name: "Bookstore",
            dependencies: [
                "AMQPClient", "AMQPEvents", "AMQPEventsSQLite", "SampleSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Sources/Samples/Bookstore",
            swiftSettings: strictSwift6
        ),
        // The operators' tool for AMQPEvents services' parking lots.
        .executableTarget(
            name: "AMQPEventsTool",
            dependencies: [
                "AMQPEvents", "AMQPClient", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Tools/AMQPEventsTool",
            swiftSettings: strictSwift6
        ),
        // A client the hostile-broker tests run as a separate process.
        .executableTarget(
            name: "AMQPProbe",
            dependencies: ["AMQPClient", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Tools/AMQPProbe",
            swiftSettings: strictSwift6
        ),
        // The benchmark's raw librabbitmq baseline, used only by amqp-bench.
        .target(
            name: "CRawAMQPBench",
            dependencies: ["CRabbitMQ"],
            path: "Sources/Benchmarks/CRawAMQPBench"
        ),
        .executableTarget(
            name: "AMQPBench",
            dependencies: [
                "AMQPClient", "AMQPEvents", "CRawAMQPBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            path: "Sources/Benchmarks/AMQPBench",
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "AMQPClientTests",
            dependencies: [
                "AMQPClient", .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "AMQPEventsTests",
            dependencies: [
                "AMQPClient", "AMQPEvents", "AMQPEventsSQLite", "AMQPEventsTesting", .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strictSwift6
        ),
        // The samples' own tests, on the in-memory broker of AMQPEventsTesting.
        .testTarget(
            name: "SampleTests",
            dependencies: [
                "OrderEvents", "FoodDelivery", "Bookstore", "SampleSupport", "AMQPEvents", "AMQPEventsSQLite",
                "AMQPEventsTesting", .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "AMQPClientIntegrationTests",
            dependencies: [
                "AMQPClient", "AMQPEvents", "AMQPEventsSQLite", "UserEvents", "SampleSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSwift6
        ),
    ],
    swiftLanguageModes: [.v6]
)
