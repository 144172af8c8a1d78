// swift-tools-version:6.2
import PackageDescription

// amqp-bench: the client side by side with raw librabbitmq, in one run.
//   swift build -c release --package-path Benchmarks && Benchmarks/.build/release/amqp-bench --help
let package = Package(
    name: "swift-amqp-client-benchmarks",
    platforms: [.macOS(.v15)],
    products: [.executable(name: "amqp-bench", targets: ["AMQPBench"])],
    dependencies: [
        .package(name: "swift-amqp-client", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
    ],
    targets: [
        // The raw librabbitmq baseline, linked straight to the C library.
        .target(name: "CRawAMQPBench", linkerSettings: [.linkedLibrary("rabbitmq")]),
        .executableTarget(
            name: "AMQPBench",
            dependencies: [
                "CRawAMQPBench",
                .product(name: "AMQPClient", package: "swift-amqp-client"),
                .product(name: "AMQPEvents", package: "swift-amqp-client"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("InternalImportsByDefault")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
