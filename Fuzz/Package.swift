// swift-tools-version:6.1
// libFuzzer targets for the parsers that see untrusted input. Built and run by scripts/fuzz.sh:
//   swift build --package-path Fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
import PackageDescription

let package = Package(
    name: "amqp-client-fuzz",
    dependencies: [.package(name: "swift-amqp-client", path: "..")],
    targets: [
        .target(name: "CFuzzerDriver", path: "Sources/CFuzzerDriver"),
        .executableTarget(
            name: "FuzzURI",
            dependencies: ["CFuzzerDriver", .product(name: "AMQPClient", package: "swift-amqp-client")],
            path: "Sources/FuzzURI"
        ),
        .executableTarget(
            name: "FuzzFrames",
            dependencies: ["CFuzzerDriver", .product(name: "AMQPClient", package: "swift-amqp-client")],
            path: "Sources/FuzzFrames"
        ),
        .executableTarget(
            name: "FuzzEvents",
            dependencies: ["CFuzzerDriver", .product(name: "AMQPEvents", package: "swift-amqp-client")],
            path: "Sources/FuzzEvents"
        ),
        .executableTarget(
            name: "FuzzProperties",
            dependencies: ["CFuzzerDriver", .product(name: "AMQPClient", package: "swift-amqp-client")],
            path: "Sources/FuzzProperties"
        ),
    ],
    swiftLanguageModes: [.v6]
)
