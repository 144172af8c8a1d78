// swift-tools-version:6.2
import PackageDescription

let strictSwift6: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// The libraries and their tests. Samples and the `amqp-events` tool live in Examples/, the
// benchmark in Benchmarks/, the fuzzers in Fuzz/: packages of their own, so that a package that
// depends on this one resolves only what its libraries need.
let package = Package(
    name: "swift-amqp-client",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "AMQPClient", targets: ["AMQPClient"]),
        .library(name: "AMQPEvents", targets: ["AMQPEvents"]),
        .library(name: "AMQPEventsTesting", targets: ["AMQPEventsTesting"]),
        .library(name: "AMQPEventsSQLite", targets: ["AMQPEventsSQLite"]),
    ],
    traits: [
        // GRDB is resolved and built only for packages that ask for AMQPEventsSQLite's store:
        // .package(url: …, from: "0.2.0", traits: ["SQLite"]).
        .trait(name: "SQLite", description: "AMQPEventsSQLite: deduplication and a transactional outbox in SQLite (GRDB)."),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
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
        // Deduplication and a transactional outbox in SQLite (GRDB), with the SQLite trait.
        .target(
            name: "AMQPEventsSQLite",
            dependencies: [
                "AMQPEvents",
                "AMQPClient",
                .product(name: "GRDB", package: "GRDB.swift", condition: .when(traits: ["SQLite"])),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSwift6
        ),
        // A client the hostile-broker and TLS tests run as a separate process.
        .executableTarget(
            name: "AMQPProbe",
            dependencies: ["AMQPClient"],
            path: "Sources/Tools/AMQPProbe",
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
                "AMQPClient", "AMQPEvents", "AMQPEventsSQLite", "AMQPEventsTesting",
                .product(name: "GRDB", package: "GRDB.swift", condition: .when(traits: ["SQLite"])),
            ],
            swiftSettings: strictSwift6
        ),
        .testTarget(
            name: "AMQPClientIntegrationTests",
            dependencies: [
                "AMQPClient", "AMQPEvents", "AMQPEventsSQLite", "AMQPEventsTesting",
                .product(name: "GRDB", package: "GRDB.swift", condition: .when(traits: ["SQLite"])),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
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
